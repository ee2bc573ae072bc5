"""The cells a gateway serves (``core/cells.py``): one store per Redis group, the directory that
places businesses (in the first cell), and moving a business from one cell to another.

Placement: a business with an endpoint is pinned in the directory (with one cell too), to the
cell rendezvous hashing picked when its first endpoint was made, or to the cell it was moved
to. A business with no endpoint is not pinned and goes where hashing says (it has nothing to
deliver); one with endpoints in ``default`` but no pin (from before pinning) is pinned there
when first placed. Pinning keeps adding a cell from moving a business away from its endpoints:
its events would otherwise land in a cell with no endpoint of its own, matched by nothing. A
gateway keeps the placements it read for ``PLACEMENT_FRESH_FOR`` seconds; a stale one is
harmless, as ingest in a cell a business moved away from refuses its events
(``keys.business_moved``) and the gateway reads the directory again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.core.cells import DEFAULT_CELL, cell_of_id, rendezvous
from gateway.core.clock import now_ms
from gateway.core.errors import CellUnavailable, Conflict, NotFound
from gateway.core.logs import describe_error
from gateway.core.settings import Settings
from gateway.store import keys
from gateway.store.connection import RedisWatch
from gateway.store.ingest import Ingester
from gateway.store.listen import ListenRelay
from gateway.store.recovery import Recovery
from gateway.store.store import Store, as_str, awaited, decode_hash

log = structlog.get_logger("hookgate.cells")

PLACEMENT_FRESH_FOR = 5.0  # seconds a gateway trusts a placement it read from the directory
# How long a move holds its business (a crashed gateway's hold lapses after it); a move of a
# cell of millions of keys, ordering keys read with SCAN, takes seconds.
MOVE_LOCK_MS = 300_000


@dataclasses.dataclass
class Cell:
    """One cell as a gateway sees it: its Redis pool and what runs on it."""

    name: str
    redis: Redis
    store: Store
    recovery: Recovery
    ingester: Ingester
    watch: RedisWatch
    listen: ListenRelay

    @classmethod
    def build(cls, name: str, redis: Redis, settings: Settings, catalog: frozenset[str]) -> Cell:
        store = Store(redis, settings, catalog, cell=name)
        watch = RedisWatch(
            redis, wait_replicas=settings.wait_replicas, wait_timeout=settings.redis_wait_timeout
        )
        return cls(
            name, redis, store, Recovery(store), Ingester(store, watch), watch, ListenRelay(store)
        )


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a business lives, and the cells it lived in before (their deliveries finish
    there, and reads look there too), each until when (ms) it may hold some: the move's time
    plus ``HOOKGATE_RETENTION`` (0: not known, kept). Past it, reads no longer look there."""

    cell: str
    previous: tuple[str, ...] = ()
    pinned: bool = False
    until: tuple[int, ...] = ()

    @property
    def cells(self) -> tuple[str, ...]:
        return (self.cell, *(c for c in self.previous if c != self.cell))

    def encode(self) -> str:
        """``c2 c1@1767225600000``: the cell, then each previous one with its time."""
        untils = self.until or (0,) * len(self.previous)
        before = [f"{c}@{u}" if u else c for c, u in zip(self.previous, untils, strict=True)]
        return " ".join([self.cell, *before])

    @classmethod
    def decode(cls, value: str, now_ms: int) -> Placement:
        cell, *entries = value.split()
        names: list[str] = []
        untils: list[int] = []
        for entry in entries:
            name, _, until = entry.partition("@")
            kept = int(until) if until.isdigit() else 0
            if name == cell or name in names or (kept and kept < now_ms):
                continue
            names.append(name)
            untils.append(kept)
        return cls(cell, tuple(names), True, tuple(untils))

    def moved_to(self, target: str, until: int) -> Placement:
        """This business in ``target``, its cell now one it lived in before (until ``until``)."""
        before = [(self.cell, until)]
        before += [
            (c, u)
            for c, u in zip(self.previous, self.until or (0,) * len(self.previous), strict=True)
            if c not in (target, self.cell)
        ]
        return Placement(target, tuple(c for c, _ in before), True, tuple(u for _, u in before))


def unavailable(cell: str, exc: BaseException) -> CellUnavailable:
    return CellUnavailable(cell, describe_error(exc))


class Cells:
    """Every cell, the first one holding the directory, API keys, audit trail, registered
    event types and portal sessions."""

    def __init__(self, cells: Sequence[Cell], retention: float = 30 * 86400.0) -> None:
        assert cells, "at least one cell"
        # how long a cell a business left may hold its deliveries: HOOKGATE_RETENTION
        self.retention_ms = int(retention * 1000)
        self.by_name: dict[str, Cell] = {cell.name: cell for cell in cells}
        self.names = tuple(self.by_name)
        self.home = cells[0]
        self.single = len(cells) == 1
        for cell in cells[1:]:
            cell.store.types_from = self.home.store
        self._placed: dict[str, tuple[float, Placement]] = {}

    @classmethod
    def build(
        cls, settings: Settings, pools: Mapping[str, Redis], catalog: frozenset[str]
    ) -> Cells:
        return cls(
            [
                Cell.build(spec.name, pools[spec.name], settings.for_cell(spec), catalog)
                for spec in settings.cell_specs
            ],
            settings.retention,
        )

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    def named(self, name: str) -> Cell:
        try:
            return self.by_name[name]
        except KeyError:
            raise NotFound(
                f"cell: no cell {name!r}; the cells are " + ", ".join(self.names),
                code="unknown_cell",
                details={"field": "cell"},
            ) from None

    # ---- ids ------------------------------------------------------------------------------

    def of_id(self, object_id: str, kind: str = "object") -> Cell:
        """The cell an id was made in (its ``.{cell}`` suffix, else ``default``). An id of a
        cell this gateway does not serve is one it never issued: ``NotFound``."""
        cell = self.by_name.get(cell_of_id(object_id))
        if cell is None:
            raise NotFound(f"no {kind} {object_id!r}")
        return cell

    async def of_endpoint(self, endpoint_id: str) -> Cell:
        """Where an endpoint is now: the cell of its id, unless its business moved it (that
        cell's copy then names the cell it moved to)."""
        origin = self.of_id(endpoint_id, "endpoint")
        if self.single:
            return origin
        try:
            moved = await awaited(origin.redis.hget(keys.endpoint(endpoint_id), "moved_to"))
        except (RedisError, OSError) as exc:
            raise unavailable(origin.name, exc) from exc
        return self.by_name.get(as_str(moved), origin) if moved else origin

    async def endpoint_copies(self, endpoint_id: str, current: Cell) -> list[Cell]:
        """The other cells holding a copy of the endpoint (its deliveries from before a move
        finish there, with the endpoint as it is now)."""
        if self.single:
            return []
        found = []
        for cell in self:
            if cell is current:
                continue
            try:
                if await awaited(cell.redis.exists(keys.endpoint(endpoint_id))):
                    found.append(cell)
            except (RedisError, OSError) as exc:
                log.warning("hookgate.cells.copy_unreachable", cell=cell.name, **_err(exc))
        return found

    # ---- businesses -----------------------------------------------------------------------

    async def placement(self, business_id: str) -> Placement:
        return (await self.placements([business_id]))[business_id]

    async def of_business(self, business_id: str) -> Cell:
        return self.by_name[(await self.placement(business_id)).cell]

    def cached(self, business_id: str) -> Placement | None:
        """The business's placement from this gateway's cache while fresh, else None (no
        I/O: ingest's fast path)."""
        found = self._placed.get(business_id)
        if found is None or time.monotonic() - found[0] >= PLACEMENT_FRESH_FOR:
            return None
        return found[1]

    async def placements(
        self, business_ids: Iterable[str], *, fresh: bool = False
    ) -> dict[str, Placement]:
        """Where each business lives: from this gateway's cache while fresh, else from the
        directory (one round trip for all). While the first cell is unreachable, placements
        read before are used however old; a business never read answers 503."""
        wanted = list(dict.fromkeys(business_ids))
        if self.single:
            only = Placement(self.home.name)
            return {b: only for b in wanted}
        now = time.monotonic()
        out: dict[str, Placement] = {}
        missing: list[str] = []
        for business in wanted:
            cached = self._placed.get(business)
            if cached is not None and not fresh and now - cached[0] < PLACEMENT_FRESH_FOR:
                out[business] = cached[1]
            else:
                missing.append(business)
        if missing:
            try:
                values = await awaited(self.home.redis.hmget(keys.CELL_DIRECTORY, missing))
            except (RedisError, OSError) as exc:
                for business in missing:
                    cached = self._placed.get(business)
                    if cached is None:
                        raise unavailable(self.home.name, exc) from exc
                    out[business] = cached[1]
                return out
            found = {b: self._decode(b, as_str(v)) for b, v in zip(missing, values, strict=True)}
            await self._adopt_from_default(found)
            for business, placed in found.items():
                self._placed[business] = (now, placed)
                out[business] = placed
            if len(self._placed) > 100_000:  # forget the oldest half
                for business in sorted(self._placed, key=lambda b: self._placed[b][0])[:50_000]:
                    del self._placed[business]
        return out

    async def _adopt_from_default(self, found: dict[str, Placement]) -> None:
        """A business with endpoints in the ``default`` cell but no pin is one from before
        cells (or from a gateway that did not pin yet): it stays in ``default``, where its
        endpoints are, and is pinned there now, rather than hashed away from them."""
        default = self.by_name.get(DEFAULT_CELL)
        unpinned = [b for b, placed in found.items() if not placed.pinned]
        if default is None or not unpinned:
            return
        try:
            async with default.redis.pipeline(transaction=False) as pipe:
                for business in unpinned:
                    pipe.sismember(keys.BUSINESSES, business)
                members = await pipe.execute()
            adopted = [b for b, member in zip(unpinned, members, strict=True) if member]
            if adopted:
                async with self.home.redis.pipeline(transaction=False) as pipe:
                    for business in adopted:
                        pipe.hsetnx(keys.CELL_DIRECTORY, business, DEFAULT_CELL)
                    await pipe.execute()
                values = await awaited(self.home.redis.hmget(keys.CELL_DIRECTORY, adopted))
                for business, value in zip(adopted, values, strict=True):
                    found[business] = self._decode(business, as_str(value))
        except (RedisError, OSError) as exc:
            raise unavailable(default.name, exc) from exc

    def _decode(self, business_id: str, value: str) -> Placement:
        if value:
            placed = Placement.decode(value, now_ms())
            if placed.cell in self.by_name:
                known = [
                    (c, u)
                    for c, u in zip(placed.previous, placed.until, strict=True)
                    if c in self.by_name
                ]
                return dataclasses.replace(
                    placed,
                    previous=tuple(c for c, _ in known),
                    until=tuple(u for _, u in known),
                )
            log.error("hookgate.cells.unknown_cell_in_directory", cell=placed.cell)
        return Placement(rendezvous(business_id, self.names))

    async def pin(self, business_id: str) -> Cell:
        """The business's cell, pinned in the directory if it was not (before its first
        endpoint is made there)."""
        placed = await self.placement(business_id)
        if placed.pinned:
            return self.by_name[placed.cell]
        if self.single:
            # Pinned with one cell too, so that the day a second cell is listed this business
            # stays with its endpoints (the endpoint's own write, next, waits for replicas).
            await awaited(self.home.redis.hsetnx(keys.CELL_DIRECTORY, business_id, placed.cell))
            return self.home
        try:
            await awaited(self.home.redis.hsetnx(keys.CELL_DIRECTORY, business_id, placed.cell))
            await self.home.store.scripts.wait_for_replicas()
        except (RedisError, OSError) as exc:
            raise unavailable(self.home.name, exc) from exc
        return self.by_name[(await self.placements([business_id], fresh=True))[business_id].cell]

    async def still_pending(self, business_id: str, placed: Placement) -> dict[str, int]:
        """Per cell the business lived in before, its deliveries not yet final there (what a
        move leaves to that cell's workers); a cell that does not answer is left out."""
        if not placed.previous:
            return {}
        current = self.by_name[placed.cell]
        ids = [
            as_str(i)
            for i in await awaited(current.redis.smembers(keys.business_endpoints(business_id)))
        ]
        counts: dict[str, int] = {}
        for name in placed.previous:
            try:
                counts[name] = (await self._pending(self.by_name[name], ids))[0]
            except (RedisError, OSError) as exc:
                log.warning("hookgate.cells.count_unreachable", cell=name, **_err(exc))
        return counts

    def forget(self, business_id: str) -> None:
        self._placed.pop(business_id, None)

    # ---- moving a business ----------------------------------------------------------------

    async def move(self, business_id: str, to: str, *, force: bool = False) -> dict[str, Any]:
        """Moves a business to cell ``to``. In order: its endpoints (sealed secrets and all)
        are copied there; the old cell refuses the business's events from then on; each
        ordering key's last sequence number is carried over, so sequences go on where they
        were; the directory sends its events to the new cell. Between the second step and the
        last, its ingest waits (``routed.RoutedIngester``). Deliveries already in the old
        cell finish there, with the endpoints as they are (later changes are copied to them).

        Refused (``Conflict``, ``ordered_deliveries_pending``) while an ordered endpoint of
        the business has deliveries pending or keys blocked in the old cell, unless ``force``:
        they would go on in the old cell while the key's next events go in the new one, out of
        order, and a blocked key would go on in the new cell past its failed head.
        One move of a business at a time (``Conflict``, ``move_in_progress``): two at once
        could leave its endpoints, refusal and directory pointing at different cells."""
        target = self.named(to)
        lock, token = keys.business_moving(business_id), secrets.token_hex(8)
        if not await awaited(self.home.redis.set(lock, token, nx=True, px=MOVE_LOCK_MS)):
            raise Conflict(
                "the business is being moved already; try again once that move is done",
                code="move_in_progress",
            )
        try:
            return await self._move(business_id, target, force=force)
        finally:
            if as_str(await awaited(self.home.redis.get(lock))) == token:
                await awaited(self.home.redis.delete(lock))

    async def _move(self, business_id: str, target: Cell, *, force: bool) -> dict[str, Any]:
        placed = (await self.placements([business_id], fresh=True))[business_id]
        source = self.by_name[placed.cell]
        if source is target:
            return self._moved_view(business_id, placed, placed.cell, 0, 0, moved=False)
        raws = await self._endpoints_of(source, business_id)
        ordered = [r["id"] for r in raws if r.get("ordered") == "1" or r.get("kind") == "listen"]
        waiting, blocked = await self._pending(source, ordered)
        if (waiting or blocked) and not force:
            raise Conflict(
                f"in cell {source.name!r}, the business's ordered endpoints have {waiting} "
                f"deliveries pending and {blocked} keys blocked: moved now, a key's next events "
                "could overtake them, or go on past a blocked head. Wait until they end, replay "
                "or skip the blocked heads, or move with force",
                code="ordered_deliveries_pending",
                details={"pending": waiting, "blocked_keys": blocked, "cell": source.name},
            )
        sessions = decode_hash(
            await awaited(source.redis.hgetall(keys.business_listen_sessions(business_id)))
        )
        # 1. the endpoints, in the new cell (a cell the business lived in before has copies:
        #    they are replaced, and its refusal of the business's events is lifted)
        async with target.redis.pipeline(transaction=True) as pipe:
            for raw in raws:
                key = keys.endpoint(raw["id"])
                pipe.delete(key)
                pipe.hset(key, mapping={k: v for k, v in raw.items() if k != "moved_to"})
                pipe.sadd(keys.ENDPOINTS, raw["id"])
                pipe.sadd(keys.business_endpoints(business_id), raw["id"])
                if raw.get("kind") == "listen":
                    pipe.zadd(
                        keys.LISTEN_SESSIONS, {raw["id"]: int(raw.get("last_connected_at") or 0)}
                    )
            if raws:
                pipe.sadd(keys.BUSINESSES, business_id)
            if sessions:
                pipe.hset(keys.business_listen_sessions(business_id), mapping=sessions)
            pipe.delete(keys.business_moved(business_id))
            await pipe.execute()
        await target.store.scripts.wait_for_replicas()
        # 2. the old cell refuses the business's events: a gateway that places it there reads
        #    the directory again (and waits for it to change); its endpoints there point on
        async with source.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.business_moved(business_id), target.name)
            for raw in raws:
                pipe.hset(keys.endpoint(raw["id"]), "moved_to", target.name)
            await pipe.execute()
        await source.store.scripts.wait_for_replicas()
        # 3. nothing more is numbered in the old cell: each key's sequence goes on in the new
        await self._carry_sequences(source, target, ordered)
        # 4. the directory: its events go to the new cell from now on
        moved = placed.moved_to(target.name, now_ms() + self.retention_ms)
        async with self.home.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.CELL_DIRECTORY, business_id, moved.encode())
            await pipe.execute()
        await self.home.store.scripts.wait_for_replicas()
        self._placed[business_id] = (time.monotonic(), moved)
        for raw in raws:
            origin = self.by_name.get(cell_of_id(raw["id"]))
            if origin is not None and origin not in (source, target):
                await awaited(origin.redis.hset(keys.endpoint(raw["id"]), "moved_to", target.name))
        pending, _ = await self._pending(source, [raw["id"] for raw in raws])
        log.info(
            "hookgate.cells.moved",
            source=source.name,
            target=target.name,
            endpoints=len(raws),
            pending_in_source=pending,
            forced=bool(waiting or blocked),
        )
        return self._moved_view(business_id, moved, source.name, len(raws), pending, moved=True)

    @staticmethod
    async def _pending(cell: Cell, endpoint_ids: list[str]) -> tuple[int, int]:
        """Of these endpoints in ``cell``: the deliveries not yet in a final state, and the
        ordering keys blocked behind a failed head (one round trip)."""
        if not endpoint_ids:
            return 0, 0
        async with cell.redis.pipeline(transaction=False) as pipe:
            for endpoint_id in endpoint_ids:
                pipe.scard(keys.endpoint_pending(endpoint_id))
                pipe.zcard(keys.ordering_blocked(endpoint_id))
            counts = [int(n) for n in await pipe.execute()]
        return sum(counts[0::2]), sum(counts[1::2])

    @staticmethod
    async def _carry_sequences(source: Cell, target: Cell, endpoint_ids: list[str]) -> None:
        """Each ordering key's last sequence number, from ``source`` to ``target`` (the higher
        one where the target has the key from an earlier stay), with its expiry. Reads the
        old cell's keys with SCAN: seconds for a cell of millions of keys."""
        for endpoint_id in endpoint_ids:
            pattern = keys.ordering_state(endpoint_id, "*")
            found = [
                as_str(k)
                async for k in source.redis.scan_iter(match=pattern, count=1000)
                if as_str(k).startswith(keys.ordering_state(endpoint_id, ""))
            ]
            for chunk in range(0, len(found), 500):
                names = found[chunk : chunk + 500]
                async with source.redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hget(name, "seq")
                        pipe.pttl(name)
                    read = await pipe.execute()
                async with target.redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hget(name, "seq")
                    theirs = await pipe.execute()
                async with target.redis.pipeline(transaction=False) as pipe:
                    for i, name in enumerate(names):
                        seq, ttl = read[2 * i], int(read[2 * i + 1])
                        if seq is None:
                            continue
                        value = max(int(seq), int(theirs[i] or 0))
                        pipe.hset(name, "seq", str(value))
                        if ttl > 0:
                            pipe.pexpire(name, ttl)
                    await pipe.execute()
        await target.store.scripts.wait_for_replicas()

    @staticmethod
    def _moved_view(
        business_id: str,
        placed: Placement,
        source: str,
        endpoints: int,
        pending: int,
        *,
        moved: bool,
    ) -> dict[str, Any]:
        return {
            "business_id": business_id,
            "cell": placed.cell,
            "previous_cells": list(placed.previous),
            "moved": moved,
            "from_cell": source,
            "endpoints": endpoints,
            "pending_in_previous_cell": pending,
        }

    async def _endpoints_of(self, cell: Cell, business_id: str) -> list[dict[str, str]]:
        ids = sorted(
            as_str(i)
            for i in await awaited(cell.redis.smembers(keys.business_endpoints(business_id)))
        )
        async with cell.redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                pipe.hgetall(keys.endpoint(endpoint_id))
            raws = [decode_hash(r) for r in await pipe.execute()]
        return [r for r in raws if r and not r.get("moved_to")]

    async def sync_copies(self, endpoint_id: str, current: Cell) -> None:
        """Writes the endpoint as it is in its cell over its copies in other cells (after a
        change), so deliveries finishing in an old cell use its new URL, secrets and state."""
        copies = await self.endpoint_copies(endpoint_id, current)
        if not copies:
            return
        raw = decode_hash(await awaited(current.redis.hgetall(keys.endpoint(endpoint_id))))
        if not raw:
            return
        for cell in copies:
            try:
                async with cell.redis.pipeline(transaction=True) as pipe:
                    pipe.delete(keys.endpoint(endpoint_id))
                    pipe.hset(keys.endpoint(endpoint_id), mapping={**raw, "moved_to": current.name})
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # the change is made where the endpoint lives; this copy keeps its old state
                # until the next change reaches it
                log.warning("hookgate.cells.copy_not_updated", cell=cell.name, **_err(exc))


def _err(exc: BaseException) -> dict[str, str]:
    return {"error": describe_error(exc)}


PROBE_WITHIN = 2.0  # seconds a cell's readiness probe may take before it counts as down


async def probe(cells: Cells) -> dict[str, str | None]:
    """Why each cell cannot take writes now (None: it can), probed concurrently."""

    async def one(cell: Cell) -> str | None:
        try:
            return await asyncio.wait_for(cell.watch.not_ready_because(), PROBE_WITHIN)
        except TimeoutError:
            return f"no answer within {PROBE_WITHIN:g} s"

    reasons = await asyncio.gather(*(one(c) for c in cells))
    return dict(zip(cells.names, reasons, strict=True))


__all__ = ["DEFAULT_CELL", "Cell", "Cells", "Placement", "probe"]
