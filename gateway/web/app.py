"""The gateway application: the JSON API and the portal over one injected Redis pool."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from gateway.core.catalog import load_catalog
from gateway.core.settings import Settings
from gateway.store.ingest import Ingester
from gateway.store.recovery import Recovery
from gateway.store.store import Store
from gateway.web import api
from gateway.web.context import INGESTER, RECOVERY, REDIS, SETTINGS, STORE
from gateway.web.errors import api_middleware
from gateway.web.portal import post_portal_link, setup_portal
from gateway.web.requests import BATCH_BODY_LIMIT


def create_app(settings: Settings, redis: Redis) -> web.Application:
    """The gateway application over an injected Redis pool (closed by the caller)."""
    app = web.Application(
        middlewares=[api_middleware(f"Bearer {settings.admin_token}".encode())],
        client_max_size=BATCH_BODY_LIMIT + 1,
    )
    store = Store(redis, settings, load_catalog())
    app[STORE] = store
    app[INGESTER] = Ingester(store)
    app[RECOVERY] = Recovery(store)
    app[SETTINGS] = settings
    app[REDIS] = redis
    api.add_routes(app)
    app.router.add_post("/v1/businesses/{id}/portal-links", post_portal_link)
    setup_portal(app)
    return app
