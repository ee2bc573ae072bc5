"""Group commit for ingest: concurrent requests share one Redis round trip.

Each request still gets its ``202`` only after its own event is written: the batch is sent
as one pipeline of per-event atomic scripts, and every waiter is answered from that reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.errors import DomainError
from gateway.core.model import Ingested, PreparedEvent
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
            return await self.store.ingest(items)  # a batch is its own group
        return [await self._group.submit(items[0])]
