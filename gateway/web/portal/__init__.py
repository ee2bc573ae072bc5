"""The delivery portal: server-rendered pages under ``/portal`` where operators and merchants
see endpoints and deliveries and replay what failed. A client of the same store and recovery
code as the JSON API; see ``auth.py`` for who may see what."""

from __future__ import annotations

from aiohttp import web

from . import keys, views
from .auth import post_portal_link
from .site import HERE, JINJA, PREFIX, make_environment, portal_middleware

__all__ = ["post_portal_link", "setup_portal"]


def setup_portal(app: web.Application) -> None:
    """Adds the portal's routes, static files and middleware to the gateway app."""
    app[JINJA] = make_environment()
    app.middlewares.append(portal_middleware)
    r = app.router
    p = PREFIX
    r.add_get(p, views.home, name="portal.root")
    r.add_get(p + "/", views.home, name="portal.home")
    r.add_get(p + "/login", views.login_page, name="portal.login")
    r.add_post(p + "/login", views.login, name="portal.login_post")
    r.add_post(p + "/logout", views.logout, name="portal.logout")
    r.add_get(p + "/link/{token}", views.link_page, name="portal.link")
    r.add_post(p + "/link/{token}", views.use_link, name="portal.link_post")
    r.add_get(p + "/endpoints", views.endpoints, name="portal.endpoints")
    r.add_post(p + "/endpoints", views.create_endpoint, name="portal.endpoint_create")
    r.add_get(p + "/endpoints/{id}", views.endpoint_page, name="portal.endpoint")
    r.add_post(p + "/endpoints/{id}/disable", views.disable_endpoint, name="portal.disable")
    r.add_post(p + "/endpoints/{id}/enable", views.enable_endpoint, name="portal.enable")
    r.add_post(p + "/endpoints/{id}/rotate-secret", views.rotate_secret, name="portal.rotate")
    r.add_post(p + "/endpoints/{id}/test", views.send_test, name="portal.test")
    r.add_post(
        p + "/endpoints/{id}/ordering/skip", views.skip_ordering_key, name="portal.ordering_skip"
    )
    r.add_get(p + "/deliveries", views.deliveries, name="portal.deliveries")
    r.add_get(p + "/deliveries/{id}", views.delivery_page, name="portal.delivery")
    r.add_post(p + "/deliveries/{id}/replay", views.replay_delivery, name="portal.replay_one")
    r.add_get(p + "/recover", views.recover, name="portal.recover")
    r.add_post(p + "/recover", views.start_recovery, name="portal.recover_post")
    r.add_get(p + "/replays/{id}", views.replay_page, name="portal.replay")
    r.add_get(p + "/replays/{id}/progress", views.replay_progress, name="portal.replay_progress")
    r.add_get(p + "/events", views.events, name="portal.events")
    r.add_get(p + "/events/{id}", views.event_page, name="portal.event")
    r.add_get(p + "/activity", views.activity, name="portal.activity")
    r.add_get(p + "/api-keys", keys.api_keys_page, name="portal.api_keys")
    r.add_post(p + "/api-keys", keys.create_api_key, name="portal.api_key_create")
    r.add_post(p + "/api-keys/{id}/revoke", keys.revoke_api_key, name="portal.api_key_revoke")
    r.add_static(p + "/static", HERE / "static", name="portal.static")
