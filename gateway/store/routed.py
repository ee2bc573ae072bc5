"""The store, recovery and ingest over every cell, as the gateway's handlers call them: each
call goes to the cell its id or business lives in (``store/cells.py``), and a listing reads
every cell it may find something in and merges their pages newest first.

A merged page's cursor is an index entry, ``{created ms}:{delivery id}``, as one cell's is:
entries are unique across cells and sort the same way in each, so every cell continues below
the same entry and a page neither skips nor repeats what the cells hold, while new deliveries
(which sort above every cursor) arrive.

With one cell every call goes straight to its store, as it did before cells.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import RedisError

from gateway.core.errors import (
    BusinessMoved,
    CellUnavailable,
    DomainError,
    NotFound,
    StoreUnavailable,
)
from gateway.core.model import EndpointFields, Ingested, PreparedEvent
from gateway.store import keys
from gateway.store.cells import Cell, Cells, unavailable
from gateway.store.recovery import DeliveryFilter, EventFilter, decode_cursor, encode_cursor
from gateway.store.store import awaited

T = TypeVar("T")
Page = tuple[list[tuple[str, dict[str, Any]]], str | None]
# An event's cursor: its entries' common prefix, ``{ms:013d}:dlv_{26-character stem}``, then
# "0" (a delivery's number starts at 1): below every entry of the event, above every other.
_EVENT_PREFIX = 13 + 1 + 4 + 26
# Seconds ingest waits, before each try, for a business's move to reach the directory: its old
# cell refuses its events from the move's second step, the directory names the new cell at the
# last (``Cells.move``), normally milliseconds later; past these, 503 business_moving.
MOVING_PAUSES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8)  # the first try waits for nothing


@contextlib.asynccontextmanager
async def in_cell(cells: Cells, cell: Cell) -> AsyncIterator[None]:
    """Turns a cell's unreachable Redis into ``CellUnavailable`` naming it (with one cell,
    errors stay as they always were)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        if cells.single:
            raise
        raise unavailable(cell.name, exc) from exc


class RoutedStore:
    """``Store``'s calls the handlers make, each in the cell it belongs to."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells
        self.home = cells.home.store

    async def _call(self, cell: Cell, call: Callable[[], Awaitable[T]]) -> T:
        async with in_cell(self.cells, cell):
            return await call()

    # ---- things of the first cell ---------------------------------------------------------

    async def known_types(self) -> frozenset[str]:
        return await self.home.known_types()

    async def list_types(self) -> list[dict[str, Any]]:
        return await self.home.list_types()

    async def register_type(self, name: str, description: str) -> bool:
        return await self.home.register_type(name, description)

    # ---- by id ----------------------------------------------------------------------------

    async def business_of(self, kind: str, object_id: str) -> str | None:
        try:
            cell = (
                await self.cells.of_endpoint(object_id)
                if kind == "ep"
                else self.cells.of_id(object_id, kind)
            )
        except NotFound:
            return None
        return await self._call(cell, lambda: cell.store.business_of(kind, object_id))

    async def get_event(self, event_id: str) -> dict[str, Any]:
        cell = self.cells.of_id(event_id, "event")
        return await self._call(cell, lambda: cell.store.get_event(event_id))

    async def get_delivery(self, delivery_id: str) -> dict[str, Any]:
        cell = self.cells.of_id(delivery_id, "delivery")
        return await self._call(cell, lambda: cell.store.get_delivery(delivery_id))

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any]:
        cell = await self.cells.of_endpoint(endpoint_id)
        return await self._call(cell, lambda: cell.store.get_endpoint(endpoint_id))

    async def update_endpoint(self, endpoint_id: str, fields: EndpointFields) -> dict[str, Any]:
        cell = await self.cells.of_endpoint(endpoint_id)
        view = await self._call(cell, lambda: cell.store.update_endpoint(endpoint_id, fields))
        await self.cells.sync_copies(endpoint_id, cell)
        return view

    async def rotate_secret(self, endpoint_id: str) -> tuple[dict[str, Any], str | None]:
        cell = await self.cells.of_endpoint(endpoint_id)
        result = await self._call(cell, lambda: cell.store.rotate_secret(endpoint_id))
        await self.cells.sync_copies(endpoint_id, cell)
        return result

    async def delete_endpoint(self, endpoint_id: str) -> None:
        cell = await self.cells.of_endpoint(endpoint_id)
        await self._call(cell, lambda: cell.store.delete_endpoint(endpoint_id))
        for copy in await self.cells.endpoint_copies(endpoint_id, cell):
            with contextlib.suppress(NotFound, RedisError, OSError):
                await copy.store.delete_endpoint(endpoint_id)  # its deliveries end there too

    async def delivery_outcomes(self, endpoint_ids: Sequence[str]) -> list[dict[str, int]]:
        out = []
        for endpoint_id in endpoint_ids:
            cell = await self.cells.of_endpoint(endpoint_id)
            async with in_cell(self.cells, cell):
                out += await cell.store.delivery_outcomes([endpoint_id])
        return out

    # ---- by business ----------------------------------------------------------------------

    async def create_endpoint(self, fields: EndpointFields) -> tuple[dict[str, Any], str | None]:
        assert fields.business_id is not None
        cell = await self.cells.pin(fields.business_id)
        return await self._call(cell, lambda: cell.store.create_endpoint(fields))

    async def open_listen_session(
        self, business_id: str, name: str, event_types: tuple[str, ...]
    ) -> tuple[dict[str, Any], str, bool]:
        cell = await self.cells.pin(business_id)
        return await self._call(
            cell, lambda: cell.store.open_listen_session(business_id, name, event_types)
        )

    async def list_endpoints(self, business_id: str | None) -> list[dict[str, Any]]:
        if business_id is not None:
            cell = await self.cells.of_business(business_id)
            return await self._call(cell, lambda: cell.store.list_endpoints(business_id))
        found: list[dict[str, Any]] = []
        for cell in self.cells:
            async with in_cell(self.cells, cell):
                found += await cell.store.list_endpoints(None)
        return sorted(found, key=lambda e: str(e["id"]))


class RoutedRecovery:
    """``Recovery``'s calls the handlers make: listings merged across cells, the rest in the
    cell of their id."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells

    async def _call(self, cell: Cell, call: Callable[[], Awaitable[T]]) -> T:
        async with in_cell(self.cells, cell):
            return await call()

    # ---- listings -------------------------------------------------------------------------

    async def list_deliveries(
        self, flt: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if self.cells.single:
            return await self.cells.home.recovery.list_deliveries(flt, limit=limit, cursor=cursor)
        if flt.event_id is not None:
            cell = self.cells.of_id(flt.event_id, "event")
            return await self._call(
                cell, lambda: cell.recovery.list_deliveries(flt, limit=limit, cursor=cursor)
            )
        if flt.endpoint_id is not None:
            current = await self.cells.of_endpoint(flt.endpoint_id)
            where = [current, *await self.cells.endpoint_copies(flt.endpoint_id, current)]
        elif flt.business_id is not None:
            placed = await self.cells.placement(flt.business_id)
            where = [self.cells.by_name[c] for c in placed.cells]
        else:
            where = list(self.cells)
        found, last = await self._merged(
            where,
            lambda cell, after: cell.recovery.page_deliveries(flt, limit=limit, after=after),
            limit,
            cursor,
            lambda member: member,
        )
        return found, last

    async def list_events(
        self, flt: EventFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if self.cells.single:
            return await self.cells.home.recovery.list_events(flt, limit=limit, cursor=cursor)
        if flt.business_id is not None:
            placed = await self.cells.placement(flt.business_id)
            where = [self.cells.by_name[c] for c in placed.cells]
        else:
            where = list(self.cells)
        return await self._merged(
            where,
            lambda cell, after: cell.recovery.page_events(flt, limit=limit, after=after),
            limit,
            cursor,
            lambda top: top[:_EVENT_PREFIX] + "0",
        )

    async def _merged(
        self,
        where: list[Cell],
        page: Callable[[Cell, str | None], Awaitable[Page]],
        limit: int,
        cursor: str | None,
        resume_below: Callable[[str], str],
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page across ``where``: each cell's page below the cursor, merged newest first,
        cut at the highest point some cell stopped reading (below it, that cell may hold more
        than it returned: the next page reads on from there)."""
        after = None if cursor is None else decode_cursor(cursor)

        async def one(cell: Cell) -> Page:
            return await self._call(cell, lambda: page(cell, after))

        pages = await asyncio.gather(*(one(cell) for cell in where))
        items: list[tuple[str, dict[str, Any]]] = []
        frontier: str | None = None
        for found, last in pages:
            items += found
            if last is not None and (frontier is None or last > frontier):
                frontier = last
        items.sort(key=lambda item: item[0], reverse=True)
        if frontier is not None:
            items = [item for item in items if item[0] >= frontier]
        taken = items[:limit]
        if len(items) > limit:
            below: str | None = resume_below(taken[-1][0])
        elif frontier is not None:
            below = frontier
        else:
            below = None
        return [view for _, view in taken], None if below is None else encode_cursor(below)

    # ---- by id ----------------------------------------------------------------------------

    async def replay_delivery(self, delivery_id: str) -> dict[str, Any]:
        cell = self.cells.of_id(delivery_id, "delivery")
        return await self._call(cell, lambda: cell.recovery.replay_delivery(delivery_id))

    async def get_replay(self, replay_id: str) -> dict[str, Any]:
        cell = self.cells.of_id(replay_id, "replay")
        return await self._call(cell, lambda: cell.recovery.get_replay(replay_id))

    async def start_replay(self, endpoint_id: str, **options: Any) -> dict[str, Any]:
        """A bulk replay in the endpoint's cell and, when its business moved, one in each cell
        it lived in before that holds matching deliveries (``other_replays``): each cell's
        workers re-send their own deliveries. A dry run counts them all."""
        cell = await self.cells.of_endpoint(endpoint_id)
        result = await self._call(cell, lambda: cell.recovery.start_replay(endpoint_id, **options))
        others: list[str] = []
        for copy in await self.cells.endpoint_copies(endpoint_id, cell):
            async with in_cell(self.cells, copy):
                more = await copy.recovery.start_replay(endpoint_id, **options)
            if options.get("dry_run"):
                result["matched"] += more["matched"]
            elif more.get("replay_id") and more["matched"]:
                others.append(str(more["replay_id"]))
        if others:
            result["other_replays"] = others
        return result

    async def blocked_keys(self, endpoint_id: str, **options: Any) -> Any:
        cell = await self.cells.of_endpoint(endpoint_id)
        return await self._call(cell, lambda: cell.recovery.blocked_keys(endpoint_id, **options))

    async def skip_key(self, endpoint_id: str, ordering_key: str) -> dict[str, Any]:
        cell = await self.cells.of_endpoint(endpoint_id)
        return await self._call(cell, lambda: cell.recovery.skip_key(endpoint_id, ordering_key))

    async def send_test(self, endpoint_id: str) -> Ingested:
        cell = await self.cells.of_endpoint(endpoint_id)
        return await self._call(cell, lambda: cell.recovery.send_test(endpoint_id))

    async def disable(self, endpoint_id: str, reason: str) -> dict[str, Any]:
        cell = await self.cells.of_endpoint(endpoint_id)
        view = await self._call(cell, lambda: cell.recovery.disable(endpoint_id, reason))
        for copy in await self.cells.endpoint_copies(endpoint_id, cell):
            with contextlib.suppress(DomainError, RedisError, OSError):
                await copy.recovery.disable(endpoint_id, reason)
        return view

    async def enable(self, endpoint_id: str) -> dict[str, Any]:
        cell = await self.cells.of_endpoint(endpoint_id)
        view = await self._call(cell, lambda: cell.recovery.enable(endpoint_id))
        for copy in await self.cells.endpoint_copies(endpoint_id, cell):
            with contextlib.suppress(DomainError, RedisError, OSError):
                await copy.recovery.enable(endpoint_id)
        return view


class RoutedIngester:
    """Ingest across cells: each item goes to its business's cell (a batch's items to several
    cells at once); a cell that cannot be reached fails only its own items."""

    def __init__(self, cells: Cells) -> None:
        self.cells = cells

    async def submit(self, items: Sequence[PreparedEvent]) -> list[Ingested | DomainError]:
        if self.cells.single:
            return await self.cells.home.ingester.submit(items)
        if len(items) == 1:
            # The usual request, one event of a business placed a moment ago: straight to its
            # cell (a tenth of a single event's gateway time went to routing without this).
            known = self.cells.cached(items[0].event.business_id)
            if known is not None and not known.previous:
                one: list[Ingested | DomainError | None] = [None]
                await self._to_cell(self.cells.by_name[known.cell], [0], items, one)
                if one[0] is not None and not isinstance(one[0], BusinessMoved):
                    return [one[0]]
        results: list[Ingested | DomainError | None] = [None] * len(items)
        todo = list(range(len(items)))
        for round_, pause in enumerate(MOVING_PAUSES):
            if round_:
                await asyncio.sleep(pause)
                for i in todo:  # moving: its old cell refused it; read where it lives again
                    self.cells.forget(items[i].event.business_id)
                    results[i] = None
            placed = await self.cells.placements(
                (items[i].event.business_id for i in todo), fresh=round_ > 0
            )
            if any(placed[b].previous for b in placed):
                await self._earlier_keys(items, todo, placed, results)
                todo = [i for i in todo if results[i] is None]
            groups: dict[str, list[int]] = {}
            for i in todo:
                groups.setdefault(placed[items[i].event.business_id].cell, []).append(i)
            if len(groups) == 1:  # the usual case: no task to make
                [(name, indices)] = groups.items()
                await self._to_cell(self.cells.by_name[name], indices, items, results)
            else:
                await asyncio.gather(
                    *(
                        self._to_cell(self.cells.by_name[c], ix, items, results)
                        for c, ix in groups.items()
                    )
                )
            todo = [i for i in todo if isinstance(results[i], BusinessMoved)]
            if not todo:
                break
        return [r if r is not None else StoreUnavailable("not stored: retry") for r in results]

    async def _to_cell(
        self,
        cell: Cell,
        indices: list[int],
        items: Sequence[PreparedEvent],
        results: list[Ingested | DomainError | None],
    ) -> None:
        try:
            stored = await cell.ingester.submit([items[i] for i in indices])
        except (RedisError, OSError) as exc:
            failed = unavailable(cell.name, exc)
            stored = [failed] * len(indices)
        except StoreUnavailable as exc:
            stored = [CellUnavailable(cell.name, exc.message)] * len(indices)
        for i, result in zip(indices, stored, strict=True):
            results[i] = result

    async def _earlier_keys(
        self,
        items: Sequence[PreparedEvent],
        todo: list[int],
        placed: dict[str, Any],
        results: list[Ingested | DomainError | None],
    ) -> None:
        """An Idempotency-Key a moved business used in a cell it lived in before answers from
        there (the event is there): a retry that spans the move is not stored twice."""
        for i in todo:
            item = items[i]
            business = item.event.business_id
            if item.idempotency_key is None or not placed[business].previous:
                continue
            for name in placed[business].previous:
                cell = self.cells.by_name[name]
                try:
                    held = await awaited(
                        cell.redis.get(keys.idempotency(business, item.idempotency_key))
                    )
                except (RedisError, OSError):
                    continue
                if held is not None:
                    results[i] = await cell.store.answer_duplicate(item, held.decode())
                    break
