"""Group commit for ingest: concurrent requests share one Redis round trip.

Each request still gets its ``202`` only after its own event is written: the batch is sent
as one pipeline of per-event atomic scripts, and every waiter is answered from that reply.
A batch is held to the deliveries one request may create here, where the request is still
one: below, group commit merges requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.errors import DomainError, LimitExceeded
from gateway.core.model import Ingested, PreparedEvent
from gateway.store import keys
from gateway.store.connection import RedisWatch
from gateway.store.groupcommit import GroupCommit
from gateway.store.store import Store

MAX_GROUP = 256


class Ingester:
    def __init__(self, store: Store, watch: RedisWatch | None = None) -> None:
        self.store = store
        self.watch = watch
        self._group: GroupCommit[PreparedEvent, Ingested | DomainError] = GroupCommit(
            store.ingest, MAX_GROUP
        )

    async def submit(self, items: Sequence[PreparedEvent]) -> list[Ingested | DomainError]:
        """Stores ``items``; returns once they are written (or raises the store's error:
        ``StoreUnavailable`` while the Redis ``watch`` says it could drop them)."""
        if self.watch is not None:
            self.watch.refuse_if_unsafe()
        if len(items) > 1:
            # A batch is its own group. One event makes at most one delivery per endpoint of
            # its business, so a single one is bounded by the endpoint limit already.
            within = await self._within_budget(items)
            stored = await self.store.ingest(items[:within]) if within else []
            return [*stored, *(self._over_budget() for _ in items[within:])]
        return [await self._group.submit(items[0])]

    async def _within_budget(self, items: Sequence[PreparedEvent]) -> int:
        """How many of ``items``, from the first, fit in the deliveries one request may create
        (``max_deliveries_per_request``), counting every endpoint of each item's business
        (one round trip for all the businesses): an upper bound, as an endpoint may not
        match the type, but one known before anything is stored."""
        budget = self.store.settings.max_deliveries_per_request
        businesses = list({item.event.business_id: None for item in items})
        async with self.store.redis.pipeline(transaction=False) as pipe:
            for business in businesses:
                pipe.scard(keys.business_endpoints(business))
            counts = dict(zip(businesses, await pipe.execute(), strict=True))
        total = 0
        for n, item in enumerate(items):
            total += 1 if item.only_endpoint else int(counts[item.event.business_id])
            if total > budget:
                return n
        return len(items)

    def _over_budget(self) -> LimitExceeded:
        budget = self.store.settings.max_deliveries_per_request
        return LimitExceeded(
            f"this request would create more than {budget} deliveries "
            "(HOOKGATE_MAX_DELIVERIES_PER_REQUEST), so this item and those after it were not "
            "stored; split the batch and send them again",
            code="delivery_limit",
            details={"limit": budget},
        )
