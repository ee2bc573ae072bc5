"""The application's shared objects, as typed aiohttp app keys: the cells, the store, recovery,
ingester, API keys, settings, first cell's Redis pool and body budget that ``create_app`` puts
in and every handler (API and portal) reads; and what a request carries past the middleware
(``ACTOR``)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.asyncio import Redis

from gateway.core.model import Actor
from gateway.core.settings import Settings
from gateway.store.apikeys import ApiKeys
from gateway.store.audit import AuditLog
from gateway.store.cells import Cells
from gateway.store.routed import RoutedIngester, RoutedRecovery, RoutedStore
from gateway.web.budget import BodyBudget

# Every cell (``store/cells.py``), and the store, recovery and ingest over them, each call
# routed to the cell it belongs to (``store/routed.py``).
CELLS = web.AppKey("cells", Cells)
STORE = web.AppKey("store", RoutedStore)
RECOVERY = web.AppKey("recovery", RoutedRecovery)
INGESTER = web.AppKey("ingester", RoutedIngester)
SETTINGS = web.AppKey("settings", Settings)
# The first cell's Redis: API keys, the audit trail, portal sessions and links live there.
REDIS = web.AppKey("redis", Redis)
API_KEYS = web.AppKey("api_keys", ApiKeys)
AUDIT = web.AppKey("audit", AuditLog)
# Who is making the request: set by the authentication middleware before any /v1 handler, and
# by the portal's from its session (the audit log records it).
ACTOR = web.RequestKey("actor", Actor)
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
# Large batches take turns at their CPU-bound part (parsing, checking, encoding): on one event
# loop several at once finish no sooner, and each turn of the loop would hold a slice of each.
BATCH_TURN = web.AppKey("batch_turn", asyncio.Lock)
