"""An endpoint's custom request headers: which names are hookgate's, when two names are the same
header, and the mask shown in place of a value. No I/O.

Receivers do not all read a name as it was sent: HTTP compares names ignoring case, and
servers that hand headers to applications as variables (CGI, WSGI, PHP, nginx's ``$http_*``)
map ``-`` and ``_`` to the same character. So ``webhook_signature`` reaches many applications
as ``webhook-signature``. Names are compared in that normal form (``normal``): a name that
becomes a reserved one is reserved, and two names with the same form are one header.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MASK", "RESERVED_HEADERS", "RESERVED_PREFIXES", "masked", "normal", "reserved"]

# Headers hookgate sets itself (content-type, user-agent; every ``webhook-*``: Standard
# Webhooks' own), those that frame the body or route the request (the body is signed as sent:
# a custom content-length or content-encoding would change what the receiver reads), the
# hop-by-hop ones (RFC 9110 7.6.1, RFC 2616 13.5.1, HTTP/2's upgrade) and ``Proxy``, which CGI
# hands to applications as HTTP_PROXY (httpoxy). ``expect`` makes the client wait for a 100.
RESERVED_HEADERS: Final = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-range",
        "content-type",
        "expect",
        "host",
        "http2-settings",
        "keep-alive",
        "proxy",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)
RESERVED_PREFIXES: Final = ("webhook-", "proxy-")

# Shown in place of every custom header value after creation. Values are printable ASCII only,
# so a client that sends a mask back (a GET, then a PATCH of what it got) is refused: the mask
# can never be stored in place of the real value.
MASK: Final = "\u2022\u2022\u2022\u2022"  # ••••


def normal(name: str) -> str:
    """The form in which receivers may read ``name``: lower case, ``_`` as ``-``."""
    return name.lower().replace("_", "-")


def reserved(name: str) -> bool:
    """Whether ``name`` is, or reaches receivers as, a header hookgate or HTTP owns."""
    form = normal(name)
    return form in RESERVED_HEADERS or form.startswith(RESERVED_PREFIXES)


def masked(names: list[str]) -> dict[str, str]:
    """The headers as every read after creation shows them: names, each value masked."""
    return dict.fromkeys(names, MASK)
