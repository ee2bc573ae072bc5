"""Replay protection: remember accepted webhook-ids for as long as their signature is valid.

A store records an id with a time-to-live and answers whether it was new. The Verifier only
records an id after the signature, timestamp and payload all passed, so forged requests
cannot fill the store or block a genuine id.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["AsyncSeenStore", "MemorySeenStore", "SeenStore"]


@runtime_checkable
class SeenStore(Protocol):
    """A synchronous record of accepted webhook-ids."""

    def add(self, webhook_id: str, ttl: float) -> bool:
        """Record `webhook_id` for `ttl` seconds; False if it is already recorded."""
        ...

    def discard(self, webhook_id: str) -> None:
        """Forget `webhook_id`, so a retry of a delivery the handler failed is accepted."""
        ...


@runtime_checkable
class AsyncSeenStore(Protocol):
    """The asyncio twin of SeenStore, used through `Verifier.verify_async`."""

    async def add(self, webhook_id: str, ttl: float) -> bool:
        """Record `webhook_id` for `ttl` seconds; False if it is already recorded."""
        ...

    async def discard(self, webhook_id: str) -> None:
        """Forget `webhook_id`, so a retry of a delivery the handler failed is accepted."""
        ...


class MemorySeenStore:
    """An in-process LRU of recent webhook-ids, thread-safe.

    Holds at most `max_entries` ids; past that the least recently added id is dropped, so a
    replay of it would pass. Size it above the number of webhooks you accept within twice
    the tolerance, or use the Redis store when several processes receive webhooks.
    """

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def add(self, webhook_id: str, ttl: float) -> bool:
        now = self._clock()
        with self._lock:
            expires = self._expiry.get(webhook_id)
            if expires is not None and expires > now:
                return False
            self._expiry[webhook_id] = now + ttl
            self._expiry.move_to_end(webhook_id)
            self._evict(now)
            return True

    def discard(self, webhook_id: str) -> None:
        with self._lock:
            self._expiry.pop(webhook_id, None)

    def _evict(self, now: float) -> None:
        entries = self._expiry
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
        # Expired ids at the old end cost memory only; drop them while they are cheap to find.
        while entries:
            oldest_id, expires = next(iter(entries.items()))
            if expires > now:
                break
            del entries[oldest_id]
