"""The application's shared objects, as typed aiohttp app keys: the store, recovery, ingester,
API keys, settings, Redis pool and body budget that ``create_app`` puts in and every
handler (API and portal) reads; and what a request carries past the middleware (``ACTOR``)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from redis.asyncio import Redis

from gateway.core.model import Actor
from gateway.core.settings import Settings
from gateway.store.apikeys import ApiKeys
from gateway.store.audit import AuditLog
from gateway.store.connection import RedisWatch
from gateway.store.ingest import Ingester
from gateway.store.recovery import Recovery
from gateway.store.store import Store
from gateway.web.budget import BodyBudget

STORE = web.AppKey("store", Store)
RECOVERY = web.AppKey("recovery", Recovery)
INGESTER = web.AppKey("ingester", Ingester)
SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
REDIS_WATCH = web.AppKey("redis_watch", RedisWatch)
API_KEYS = web.AppKey("api_keys", ApiKeys)
AUDIT = web.AppKey("audit", AuditLog)
# Who is making the request: set by the authentication middleware before any /v1 handler, and
# by the portal's from its session (the audit log records it).
ACTOR = web.RequestKey("actor", Actor)
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
# Large batches take turns at their CPU-bound part (parsing, checking, encoding): on one event
# loop several at once finish no sooner, and each turn of the loop would hold a slice of each.
BATCH_TURN = web.AppKey("batch_turn", asyncio.Lock)
