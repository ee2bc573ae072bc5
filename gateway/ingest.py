"""Group commit for ingest: concurrent requests share one Redis round trip.

Each request still gets its ``202`` only after its own event is written: the batch is sent
as one pipeline of per-event atomic scripts, and every waiter is answered from that reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from .errors import ApiError
from .store import Ingested, PreparedEvent, Store

MAX_GROUP = 256


class Ingester:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[tuple[PreparedEvent, asyncio.Future[Ingested | ApiError]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[PreparedEvent]) -> list[Ingested | ApiError]:
        """Stores ``items``; returns once they are written (or raises the store's error)."""
        if len(items) > 1:
            return await self.store.ingest(items)  # a batch is its own group
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ingested | ApiError] = loop.create_future()
        self._waiting.append((items[0], future))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush())
        return [await future]

    async def _flush(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                try:
                    results = await self.store.ingest([item for item, _ in group])
                except Exception as exc:  # each waiter sees the failure of its own write
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flushing = False
