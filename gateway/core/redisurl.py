"""``HOOKGATE_REDIS_URL``: one Redis (``redis://``, ``rediss://``, ``unix://``) or a group behind
Sentinel (``redis+sentinel://`` / ``rediss+sentinel://``).

Sentinel form: ``redis+sentinel://[user:password@]host:port[,host:port…]/master_name[/db]``.
The credentials are the data nodes' (the primary and its replicas); the sentinels are asked
without them. ``rediss+sentinel`` speaks TLS to the data nodes. A port left out is 26379.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import unquote, urlsplit

SENTINEL_PORT = 26379
_MASTER_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)(?::(\d{1,5}))?$")


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """Where the data lives: ``url`` for one Redis, or sentinels and the group's name."""

    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """Where it points, safe to log (never the password)."""
        if not self.is_sentinel:
            parts = urlsplit(self.url)
            host = parts.hostname or parts.path
            port = f":{parts.port}" if parts.port else ""
            return f"{parts.scheme}://{host}{port}{parts.path if parts.hostname else ''}"
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        return f"{scheme}://{hosts}/{self.master}/{self.db}"


def parse_redis_url(text: str) -> RedisTarget:
    """The target ``text`` names; raises ``ValueError`` saying what is wrong (never echoing a
    password)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise ValueError("no scheme (redis://, rediss://, unix:// or redis+sentinel://)")
    if scheme in ("redis", "rediss", "unix"):
        _check_plain(text)
        return RedisTarget(url=text)
    if scheme not in ("redis+sentinel", "rediss+sentinel"):
        raise ValueError(f"unknown scheme {scheme!r}")
    authority, slash, path = rest.partition("/")
    if not slash:
        raise ValueError("missing /master_name after the sentinel addresses")
    username = password = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_sentinel(entry) for entry in authority.split(","))
    segments = path.split("/")
    if path.endswith("/"):
        segments = segments[:-1]
    if not 1 <= len(segments) <= 2 or not _MASTER_NAME.match(segments[0]):
        raise ValueError("the path must be /master_name or /master_name/db")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit() or int(segments[1]) > 15:
            raise ValueError("the database must be a number from 0 to 15")
        db = int(segments[1])
    return RedisTarget(
        sentinels=sentinels,
        master=segments[0],
        db=db,
        username=username,
        password=password,
        tls=scheme == "rediss+sentinel",
    )


def _sentinel(entry: str) -> tuple[str, int]:
    match = _HOST_PORT.match(entry.strip())
    if match is None:
        raise ValueError("each sentinel must be host or host:port, comma-separated")
    host = match.group(1).strip("[]")
    port = int(match.group(2)) if match.group(2) else SENTINEL_PORT
    if not 1 <= port <= 65535:
        raise ValueError("a sentinel port is out of range")
    return host, port


def _check_plain(text: str) -> None:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("not a valid URL") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("no host")
