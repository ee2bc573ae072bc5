"""Group commit: concurrent callers share one round trip to Redis.

Each caller submits one item and waits for its own result. The first caller of an idle
group starts a flush; items submitted while a flush is on the wire go in the next one. So
under load a round trip carries everything that queued up during the previous one, and a
lone caller pays no wait at all. A failed round trip fails exactly the callers it carried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self, send: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_group: int
    ) -> None:
        self._send = send
        self._max_group = max_group
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # held so the flush is not collected

    async def submit(self, item: T) -> R:
        """``item``'s result, once the round trip that carried it is answered."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                self._waiting = self._waiting[self._max_group :]
                try:
                    results = await self._send([item for item, _ in group])
                except Exception as exc:  # each caller sees the failure of its own write
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._flushing = False
