"""The SSRF guard: the worker never connects to an address inside the network it runs in.

Three layers, all driven by ``gateway.core.targets.is_blocked`` (the policy itself):

* ``check_url`` rejects IP-literal and ``localhost`` URLs before any I/O, in every spelling
  (full-width, percent-encoded, legacy IPv4: ``normalise_host``), as creation does;
* ``GuardedResolver`` drops blocked addresses from DNS answers (a name that resolves only
  to blocked addresses fails as a DNS error, and nothing blocked enters aiohttp's DNS cache);
* ``GuardedConnector`` checks the addresses it is about to connect to, after DNS, and the
  peer it connected to. aiohttp never passes IP literals to the resolver, and a resolver can
  be swapped or rebound, so this is the check that cannot be skipped: the address checked is
  the address connected to.

A refusal surfaces from ``ClientSession`` as an ``aiohttp.ClientConnectorError`` whose
``os_error`` is a ``BlockedDestination``; ``find_blocked(exc)`` digs it out.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.core.targets import IPNetwork, check_address

if TYPE_CHECKING:
    from aiohttp.client_proto import ResponseHandler
    from aiohttp.client_reqrep import ClientRequest

__all__ = [
    "BlockedDestination",
    "GuardedConnector",
    "GuardedResolver",
    "find_blocked",
    "make_guarded_connector",
]


class BlockedDestination(OSError):
    """A destination the SSRF guard refuses; ``reason`` is short and safe to record."""

    def __init__(self, host: str, reason: str) -> None:
        message = f"blocked destination {host!r}: {reason}"
        # errno None: this is policy, not a socket failure. strerror carries the message so
        # aiohttp's ClientConnectorError (which prints strerror) shows it.
        super().__init__(None, message)
        self.host = host
        self.reason = reason

    def __str__(self) -> str:
        return str(self.strerror)

    __reduce__ = BaseException.__reduce__


class GuardedResolver(AbstractResolver):
    """Resolve with ``inner`` and drop blocked addresses; none left raises BlockedDestination.

    ``inner`` defaults to aiohttp's ``DefaultResolver``, created on first use (it needs the
    running loop) and closed with this resolver; a given ``inner`` is closed too.
    """

    def __init__(
        self, inner: AbstractResolver | None = None, *, allowed: Sequence[IPNetwork] = ()
    ) -> None:
        self._inner = inner
        self.allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = aiohttp.DefaultResolver()
        answers = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        reasons: list[str] = []
        for answer in answers:
            reason = check_address(answer["host"], self.allowed)
            if reason is None:
                kept.append(answer)
            else:
                reasons.append(f"{answer['host']} is {reason}")
        if not kept:
            raise BlockedDestination(host, "; ".join(reasons) or "no addresses")
        return kept

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that refuses blocked addresses at connect time, whatever DNS said.

    It filters the exact address list handed to the socket layer (this covers IP literals,
    which aiohttp never sends to the resolver, and answers from a rebinding or unguarded
    resolver), then checks the connected peer as a last net. Use ``make_guarded_connector``.
    """

    def __init__(self, *, allowed: Sequence[IPNetwork] = (), **kwargs: Any) -> None:
        self.allowed = tuple(allowed)
        resolver = kwargs.pop("resolver", None)
        super().__init__(resolver=GuardedResolver(resolver, allowed=self.allowed), **kwargs)
        # The connector closes a resolver only if it made it; ours wraps, so it owns it.
        self._resolver_owner = True

    def check_peer(self, transport: asyncio.BaseTransport) -> str | None:
        """Why the transport's peer is refused, or None; no peer address counts as refused."""
        peer = transport.get_extra_info("peername")
        if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
            return "no peer address"
        return check_address(peer[0], self.allowed)

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[AddrInfoType],
        req: ClientRequest,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109  (aiohttp's signature)
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        permitted: list[AddrInfoType] = []
        refused: list[str] = []
        for info in addr_infos:
            host = str(info[4][0])
            reason = check_address(host, self.allowed)
            if reason is None:
                permitted.append(info)
            else:
                refused.append(f"{host} is {reason}")
        if not permitted:
            blocked = BlockedDestination(req.url.raw_host or "", "; ".join(refused))
            raise aiohttp.ClientConnectorError(req.connection_key, blocked)

        transport, protocol = await super()._wrap_create_connection(
            *args,
            addr_infos=permitted,
            req=req,
            timeout=timeout,
            client_error=client_error,
            **kwargs,
        )
        reason = self.check_peer(transport)
        if reason is not None:
            transport.abort()
            blocked = BlockedDestination(req.url.raw_host or "", f"peer is {reason}")
            raise aiohttp.ClientConnectorError(req.connection_key, blocked)
        return transport, protocol


def make_guarded_connector(
    allowed: Sequence[IPNetwork] = (), allow_private: bool = False, **kwargs: Any
) -> aiohttp.TCPConnector:
    """The worker's connector: guarded, or a plain TCPConnector when ``allow_private``.

    ``kwargs`` go to ``TCPConnector`` (``limit``, ``ttl_dns_cache``, ``resolver``, …). Call it
    inside the running loop, like any connector.
    """
    if allow_private:
        return aiohttp.TCPConnector(**kwargs)
    return GuardedConnector(allowed=allowed, **kwargs)


def find_blocked(exc: BaseException) -> BlockedDestination | None:
    """The ``BlockedDestination`` behind an aiohttp client error, if the guard refused."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BlockedDestination):
            return current
        following: Iterable[BaseException | None] = (
            getattr(current, "os_error", None),
            current.__cause__,
            current.__context__,
        )
        pending.extend(following)
    return None
