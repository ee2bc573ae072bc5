"""The scopes an API key may hold. What each one lets a caller do is the route table's
(``gateway/web/access.py``): one row per ``/v1`` route, naming the scope it needs."""

from __future__ import annotations

from typing import Literal, get_args

# ``admin`` covers every route; the others one kind of work each.
Scope = Literal[
    "admin",
    "events:write",
    "read",
    "deliveries:replay",
    "endpoints:write",
    "portal-links:create",
]
SCOPES: tuple[str, ...] = get_args(Scope)
ADMIN = "admin"
