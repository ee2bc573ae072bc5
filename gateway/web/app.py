"""The gateway application: the JSON API and the portal over one injected Redis pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from aiohttp import web
from redis.asyncio import Redis

from gateway.core.catalog import load_catalog
from gateway.core.settings import Settings
from gateway.store.apikeys import ApiKeys
from gateway.store.audit import AuditLog
from gateway.store.cells import Cells
from gateway.store.routed import RoutedIngester, RoutedRecovery, RoutedStore
from gateway.web import api
from gateway.web.access import Gate
from gateway.web.audit import audit_middleware
from gateway.web.budget import BodyBudget, release_bodies
from gateway.web.context import (
    API_KEYS,
    AUDIT,
    BATCH_TURN,
    BODY_BUDGET,
    CELLS,
    INGESTER,
    RECOVERY,
    REDIS,
    SETTINGS,
    STORE,
)
from gateway.web.errors import api_middleware
from gateway.web.listen import setup_listen
from gateway.web.portal import post_portal_link, setup_portal
from gateway.web.requests import BATCH_BODY_LIMIT


def create_app(settings: Settings, redis: Redis | Mapping[str, Redis]) -> web.Application:
    """The gateway application over injected Redis pools (closed by the caller): one per cell
    of ``settings.cell_specs``, by name, or the one cell's pool."""
    pools = redis if isinstance(redis, Mapping) else {settings.cell_specs[0].name: redis}
    cells = Cells.build(settings, pools, load_catalog())
    home = cells.home
    store = RoutedStore(cells)
    api_keys = ApiKeys(home.redis, home.store.scripts)
    gate = Gate(settings.admin_token, api_keys, store)
    app = web.Application(
        # release_bodies outermost: a request's body bytes are given back however it ends;
        # then the audit trail, which records what the others answered
        middlewares=[release_bodies, audit_middleware, api_middleware(gate.admit)],
        client_max_size=BATCH_BODY_LIMIT + 1,
    )
    app[CELLS] = cells
    app[STORE] = store
    app[API_KEYS] = api_keys
    app[AUDIT] = AuditLog(home.redis, home.store.scripts, settings.audit_retention)
    app[INGESTER] = RoutedIngester(cells)
    app[RECOVERY] = RoutedRecovery(cells)
    app[SETTINGS] = settings
    app[REDIS] = home.redis
    app[BODY_BUDGET] = BodyBudget(settings.max_body_bytes_in_flight)
    app[BATCH_TURN] = asyncio.Lock()
    app.cleanup_ctx.append(_watch_redis)
    app.cleanup_ctx.append(_write_key_uses)
    api.add_routes(app)
    setup_listen(app)
    app.router.add_post("/v1/businesses/{id}/portal-links", post_portal_link)
    setup_portal(app)
    app.router.add_get("/", _to_portal)
    return app


async def _to_portal(request: web.Request) -> web.Response:
    """``/`` in a browser: the portal, rather than a JSON 404."""
    raise web.HTTPFound("/portal/")


async def _watch_redis(app: web.Application) -> AsyncIterator[None]:
    """Re-reads each cell's eviction policy every HOOKGATE_REDIS_CHECK_INTERVAL while serving."""
    interval = app[SETTINGS].redis_check_interval
    tasks = [asyncio.create_task(cell.watch.watch_forever(interval)) for cell in app[CELLS]]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _write_key_uses(app: web.Application) -> AsyncIterator[None]:
    """Writes when each API key was last used, once a second while serving and once at the
    end."""
    task = asyncio.create_task(app[API_KEYS].flush_uses_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
