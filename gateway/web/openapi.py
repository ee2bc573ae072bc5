"""The OpenAPI 3.1 document served at ``/openapi.json``."""

from __future__ import annotations

import functools
from typing import Any

from gateway import __version__
from gateway.store.recovery import STATUSES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "Malformed JSON",
        401: "Missing or wrong bearer token",
        404: "Unknown id",
        409: "Conflict",
        413: "Body too large",
        422: "A field is missing, of the wrong type or not allowed",
        503: "The store is unavailable",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


def _query(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _id_param(prefix: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": f"an id starting with {prefix}_",
    }


_TIME = {"type": ["string", "null"], "format": "date-time"}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {},
                },
            }
        },
    },
    "EventIn": {
        "type": "object",
        "required": ["business_id", "type", "data"],
        "additionalProperties": False,
        "properties": {
            "business_id": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:.]{1,128}$"},
            "type": {"type": "string", "examples": ["payment.succeeded"]},
            "timestamp": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "absent or null: the time of ingest",
            },
            "data": {"type": "object"},
        },
    },
    "EventAccepted": {
        "type": "object",
        "required": ["id", "business_id", "type", "deliveries", "duplicate"],
        "properties": {
            "id": {"type": "string"},
            "business_id": {"type": "string"},
            "type": {"type": "string"},
            "deliveries": {"type": "array", "items": {"type": "string"}},
            "duplicate": {"type": "boolean"},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event_id", "endpoint_id", "status"],
        "properties": {
            "id": {"type": "string"},
            "event_id": {"type": "string"},
            "endpoint_id": {"type": "string"},
            "business_id": {"type": "string"},
            "event_type": {"type": ["string", "null"]},
            "status": {"enum": ["pending", "succeeded", "failed", "cancelled", "skipped"]},
            "reason": {"type": ["string", "null"]},
            "attempt_count": {"type": "integer"},
            "replays": {"type": "integer", "description": "how many times it was replayed"},
            "next_attempt_at": _TIME,
            "created_at": _TIME,
            "updated_at": _TIME,
            "attempts": {"type": "array", "items": _ref("Attempt")},
        },
    },
    "Attempt": {
        "type": "object",
        "properties": {
            "attempt": {"type": "integer"},
            "replay": {"type": "integer", "description": "0: first chain; n: the nth replay"},
            "at": {"type": "integer", "description": "unix seconds, the webhook-timestamp sent"},
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "number"},
            "error": {"type": ["string", "null"]},
            "response_body": {"type": "string", "description": "first 4 KB"},
            "outcome": {"enum": ["succeeded", "retry", "failed", "gone"]},
        },
    },
    "Event": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "business_id": {"type": "string"},
            "type": {"type": "string"},
            "created_at": _TIME,
            "payload": {"type": "object"},
            "deliveries": {"type": "array", "items": _ref("Delivery")},
        },
    },
    "EndpointIn": {
        "type": "object",
        "required": ["business_id", "url"],
        "additionalProperties": False,
        "properties": {
            "business_id": {"type": "string"},
            "url": {"type": "string", "format": "uri"},
            "event_types": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "exact names or family.* patterns; absent = every type",
            },
            "description": {"type": ["string", "null"], "maxLength": 1024},
            "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "max_in_flight": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
        },
    },
    "EndpointPatch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "event_types": {"type": ["array", "null"], "items": {"type": "string"}},
            "description": {"type": ["string", "null"], "maxLength": 1024},
            "headers": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            "max_in_flight": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
        },
    },
    "ReplayIn": {
        "type": "object",
        "required": ["since"],
        "additionalProperties": False,
        "properties": {
            "since": {"type": "string", "description": "RFC 3339 time or a duration ago (2h)"},
            "until": {"type": "string", "description": "RFC 3339 time or a duration ago"},
            "status": {
                "enum": ["failed", "all"],
                "description": "failed: every delivery "
                "that did not reach the endpoint (failed, cancelled, skipped)",
            },
            "dry_run": {"type": "boolean"},
        },
    },
    "Replay": {
        "type": "object",
        "required": ["replay_id", "matched"],
        "properties": {
            "replay_id": {"type": ["string", "null"]},
            "matched": {"type": "integer"},
            "enqueued": {"type": "integer"},
            "skipped": {"type": "integer"},
            "succeeded": {"type": "integer"},
            "failed": {"type": "integer"},
            "cancelled": {"type": "integer"},
            "pending": {"type": "integer"},
            "state": {"enum": ["enqueuing", "running", "completed"]},
            "dry_run": {"type": "boolean"},
            "already_running": {"type": "boolean"},
        },
    },
    "Endpoint": {
        "type": "object",
        "required": ["id", "business_id", "url"],
        "properties": {
            "id": {"type": "string"},
            "business_id": {"type": "string"},
            "url": {"type": "string"},
            "event_types": {"type": ["array", "null"], "items": {"type": "string"}},
            "description": {"type": "string"},
            "headers": {"type": "object"},
            "max_in_flight": {"type": "integer"},
            "disabled": {"type": "boolean"},
            "disabled_reason": {"type": ["string", "null"]},
            "disabled_at": _TIME,
            "health": {
                "type": "object",
                "description": "only on GET /v1/endpoints/{id}",
                "properties": {
                    "last_success_at": _TIME,
                    "consecutive_failures": {"type": "integer"},
                    "failing_since": _TIME,
                    "attempts_24h": {"type": "integer"},
                    "success_rate_24h": {"type": ["number", "null"]},
                    "in_flight": {"type": "integer"},
                    "hourly": {"type": "array", "items": {"type": "object"}},
                },
            },
            "secret_count": {"type": "integer"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "secret": {"type": "string", "description": "only in create and rotate answers"},
        },
    },
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    ep_id = [_id_param("ep")]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hookgate",
            "version": __version__,
            "description": "Durable ingest and signed, retried webhook delivery.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/events": {
                "post": {
                    "summary": "Ingest one event; 202 only once it and its deliveries are stored",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                        }
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("EventIn")}},
                    },
                    "responses": {
                        "202": _json(_ref("EventAccepted"), "Stored"),
                        **_errors(400, 401, 409, 413, 422, 503),
                    },
                }
            },
            "/v1/events/batch": {
                "post": {
                    "summary": "Ingest up to 1000 events; one result per item",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "minItems": 1,
                                            "maxItems": 1000,
                                            "items": {
                                                "description": (
                                                    "an event as for POST /v1/events, plus an "
                                                    "optional idempotency_key; an item that is "
                                                    "not valid gets its own error result"
                                                )
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "rejected": {"type": "integer"},
                                    "results": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                            "Per-item results",
                        ),
                        **_errors(400, 401, 413, 422, 503),
                    },
                }
            },
            "/v1/events/{id}": {
                "get": {
                    "summary": "An event and the state of each of its deliveries",
                    "parameters": [_id_param("evt")],
                    "responses": {"200": _json(_ref("Event"), "The event"), **_errors(401, 404)},
                }
            },
            "/v1/event-types": {
                "get": {
                    "summary": "Catalogue and registered event types",
                    "responses": {"200": _json({"type": "object"}, "Types"), **_errors(401)},
                },
                "post": {
                    "summary": "Register a custom event type",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "description": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json({"type": "object"}, "Registered"),
                        "200": _json({"type": "object"}, "Already known"),
                        **_errors(400, 401, 413, 422),
                    },
                },
            },
            "/v1/endpoints": {
                "get": {
                    "summary": "List endpoints, optionally of one business",
                    "parameters": [
                        {
                            "name": "business_id",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "data": {"type": "array", "items": _ref("Endpoint")}
                                },
                            },
                            "Endpoints",
                        ),
                        **_errors(401, 422),
                    },
                },
                "post": {
                    "summary": "Create an endpoint; the answer holds its secret, once",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("EndpointIn")}},
                    },
                    "responses": {
                        "201": _json(_ref("Endpoint"), "Created"),
                        **_errors(400, 401, 413, 422),
                    },
                },
            },
            "/v1/endpoints/{id}": {
                "get": {
                    "parameters": ep_id,
                    "summary": "One endpoint (never its secret)",
                    "responses": {
                        "200": _json(_ref("Endpoint"), "The endpoint"),
                        **_errors(401, 404),
                    },
                },
                "patch": {
                    "parameters": ep_id,
                    "summary": "Change an endpoint",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("EndpointPatch")}},
                    },
                    "responses": {
                        "200": _json(_ref("Endpoint"), "Changed"),
                        **_errors(400, 401, 404, 409, 413, 422),
                    },
                },
                "delete": {
                    "parameters": ep_id,
                    "summary": "Delete; pending deliveries are cancelled",
                    "responses": {"204": {"description": "Deleted"}, **_errors(401, 404)},
                },
            },
            "/v1/endpoints/{id}/rotate-secret": {
                "post": {
                    "parameters": ep_id,
                    "summary": "New secret; old ones keep signing for the grace period",
                    "responses": {
                        "200": _json(_ref("Endpoint"), "Rotated"),
                        **_errors(401, 404, 409),
                    },
                }
            },
            "/v1/deliveries": {
                "get": {
                    "summary": "Deliveries, newest first, cursor-paginated",
                    "parameters": [
                        _query("endpoint_id", "only this endpoint's"),
                        _query("event_id", "only this event's"),
                        _query("business_id", "only this business's"),
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": list(STATUSES)},
                        },
                        _query("event_type", "only this type"),
                        _query("since", "RFC 3339 time or a duration ago (2h)"),
                        _query("until", "RFC 3339 time or a duration ago"),
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                        },
                        _query("cursor", "next_cursor of the previous page"),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["data", "next_cursor"],
                                "properties": {
                                    "data": {"type": "array", "items": _ref("Delivery")},
                                    "next_cursor": {"type": ["string", "null"]},
                                },
                            },
                            "A page of deliveries",
                        ),
                        **_errors(401, 422),
                    },
                }
            },
            "/v1/deliveries/{id}/replay": {
                "post": {
                    "parameters": [_id_param("dlv")],
                    "summary": "A new attempt chain for one delivery: same webhook-id and body",
                    "responses": {
                        "202": _json(_ref("Delivery"), "Replaying"),
                        **_errors(401, 404, 409),
                    },
                }
            },
            "/v1/endpoints/{id}/replay": {
                "post": {
                    "parameters": [_id_param("ep")],
                    "summary": "Replay an endpoint's deliveries of a time window, in batches",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("ReplayIn")}},
                    },
                    "responses": {
                        "202": _json(_ref("Replay"), "Started (or the same one, already running)"),
                        "200": _json(_ref("Replay"), "A dry run: what would be replayed"),
                        **_errors(400, 401, 404, 409, 413, 422),
                    },
                }
            },
            "/v1/replays/{id}": {
                "get": {
                    "parameters": [_id_param("rpl")],
                    "summary": "A bulk replay's progress",
                    "responses": {"200": _json(_ref("Replay"), "Progress"), **_errors(401, 404)},
                }
            },
            "/v1/businesses/{id}/portal-links": {
                "post": {
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_:.-]{1,128}$"},
                            "description": "the business the link opens the portal for",
                        }
                    ],
                    "summary": "A single-use link that opens the delivery portal for one business",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "ttl": {
                                            "type": "string",
                                            "description": "how long the link stays valid, "
                                            "1s to 7d (default 24h); the session it opens "
                                            "ends then too, after at most 12h",
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(
                            {
                                "type": "object",
                                "required": ["url", "expires_at", "business_id"],
                                "properties": {
                                    "url": {"type": "string"},
                                    "expires_at": {"type": "string", "format": "date-time"},
                                    "business_id": {"type": "string"},
                                },
                            },
                            "The link: give it to the merchant; it works once",
                        ),
                        **_errors(400, 401, 404, 413, 422),
                    },
                }
            },
            "/v1/endpoints/{id}/disable": {
                "post": {
                    "parameters": [_id_param("ep")],
                    "summary": "Disable: pending deliveries are cancelled, new ones skipped",
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "reason": {
                                            "type": "string",
                                            "minLength": 1,
                                            "maxLength": 500,
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("Endpoint"), "Disabled"),
                        **_errors(400, 401, 404, 413, 422),
                    },
                }
            },
            "/v1/endpoints/{id}/enable": {
                "post": {
                    "parameters": [_id_param("ep")],
                    "summary": "Enable again",
                    "responses": {"200": _json(_ref("Endpoint"), "Enabled"), **_errors(401, 404)},
                }
            },
            "/v1/endpoints/{id}/test": {
                "post": {
                    "parameters": [_id_param("ep")],
                    "summary": "Send a signed hookgate.test event to this endpoint alone",
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "event_id": {"type": "string"},
                                    "delivery_id": {"type": "string"},
                                },
                            },
                            "Sent through the normal path",
                        ),
                        **_errors(401, 404, 409),
                    },
                }
            },
            "/v1/deliveries/{id}": {
                "get": {
                    "parameters": [_id_param("dlv")],
                    "summary": "A delivery with every attempt and its next attempt time",
                    "responses": {
                        "200": _json(_ref("Delivery"), "The delivery"),
                        **_errors(401, 404),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "security": [],
                    "summary": "Liveness",
                    "responses": {"200": _json({"type": "object"}, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "security": [],
                    "summary": "Readiness: Redis answers",
                    "responses": {
                        "200": _json({"type": "object"}, "Ready"),
                        "503": _json(_ref("Error"), "Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "security": [],
                    "summary": "Prometheus metrics",
                    "description": (
                        "Open unless HOOKGATE_METRICS_TOKEN is set; then it needs "
                        "`Authorization: Bearer <that token>`."
                    ),
                    "responses": {
                        "200": {"description": "Prometheus text", "content": {"text/plain": {}}},
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "security": [],
                    "summary": "This document",
                    "responses": {"200": _json({"type": "object"}, "OpenAPI")},
                }
            },
        },
    }
