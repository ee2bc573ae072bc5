"""Operator commands: find deliveries, replay them, send events, manage endpoints and API keys,
unblock ordering keys, read the audit log.

They talk to a running gateway over its HTTP API (``--url``/``HOOKGATE_URL`` and ``--token``:
an API key from ``HOOKGATE_API_KEY``, else the admin token from ``HOOKGATE_ADMIN_TOKEN``). Bad
arguments and 4xx answers exit 2 with a one-line reason; an unreachable gateway or a 5xx exits
1.
"""

from __future__ import annotations

import functools
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gateway.cli.client import ApiClient, ApiFailure
from gateway.core import formats
from gateway.core.audit import ACTION_FILTERS
from gateway.core.clock import iso_ms
from gateway.core.durations import parse_time
from gateway.core.limits import MAX_DEPTH

F = TypeVar("F", bound=Callable[..., Any])


def api_options(command: F) -> F:
    """``--url`` and ``--token`` on a command; the command receives ``api: ApiClient``."""

    @click.option(
        "--url",
        envvar="HOOKGATE_URL",
        default="http://127.0.0.1:8000",
        show_default=True,
        help="The gateway (env HOOKGATE_URL).",
    )
    @click.option(
        "--token",
        envvar=["HOOKGATE_API_KEY", "HOOKGATE_ADMIN_TOKEN"],
        help="An API key (env HOOKGATE_API_KEY) or the admin token (env HOOKGATE_ADMIN_TOKEN).",
    )
    @functools.wraps(command)
    def wrapper(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        if not token:
            _usage("no token: set HOOKGATE_ADMIN_TOKEN (or HOOKGATE_API_KEY), or pass --token")
        try:
            return command(*args, api=ApiClient(url, token), **kwargs)
        except ApiFailure as exc:
            if exc.status == 401:  # often a CLI pointed at another gateway than meant
                _usage(
                    f"{url} answered 401 ({exc}): the token from --token, HOOKGATE_API_KEY "
                    "or HOOKGATE_ADMIN_TOKEN is not accepted there"
                )
            click.echo(f"hookgate: {exc.message if exc.status == 0 else exc}", err=True)
            raise SystemExit(2 if 400 <= exc.status < 500 else 1) from None

    return wrapper  # type: ignore[return-value]


def _to_time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``30s``, ``15m``, ``2h``, ``5d`` (that long ago) or an RFC 3339 time → RFC 3339 UTC."""
    if value is None:
        return None
    try:
        seconds = parse_time(value, time.time())
    except ValueError as exc:
        _usage(f"--{param.name}: {exc}")
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def listing_options(command: F) -> F:
    """What every listing command takes besides its own filters: a time window, a page size
    and cursor, ``--json``, and the gateway's ``--url`` and ``--token``."""
    for option in reversed(
        [
            click.option(
                "--since", callback=_to_time, help="30s, 15m, 2h, 5d ago, or an RFC 3339 time."
            ),
            click.option("--until", callback=_to_time, help="Likewise."),
            click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True),
            click.option("--cursor", help="Continue from a previous page's next cursor."),
            click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts."),
        ]
    ):
        command = option(command)
    return api_options(command)


def _usage(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2."""
    click.echo(f"hookgate: {message}", err=True)
    raise SystemExit(2)


def _count(n: int, noun: str) -> str:
    """``1 delivery``, ``2 deliveries``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _short_time(value: str | None) -> str:
    return (value or "-").replace("T", " ")[:19]


_ENDPOINT_ID_RE = re.compile(formats.IDS["ep"])
_ORDERING_KEY_RE = re.compile(formats.ORDERING_KEY)


def _endpoint_id(value: str) -> str:
    """An endpoint id as hookgate makes them; exits 2 otherwise (it goes into a URL path)."""
    if not _ENDPOINT_ID_RE.match(value):
        _usage(f"{value!r} is not an endpoint id (ep_ and 26 characters)")
    return value


def _ordering_key(value: str) -> str:
    """An ordering key as events carry them; exits 2 otherwise. A key that is not text (bytes
    of another encoding on the command line) cannot be one either."""
    if not value:
        _usage("KEY: must not be empty")
    try:
        value.encode()
    except UnicodeEncodeError:
        _usage("KEY: must be UTF-8 text")
    if not _ORDERING_KEY_RE.match(value):
        _usage(f"KEY: must be {formats.WORDS[formats.ORDERING_KEY]}")
    return value


ON_EXHAUSTED = ("block", "skip")


def _on_exhausted(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value not in ON_EXHAUSTED:
        _usage(f"--on-exhausted: must be block or skip, not {value!r}")
    return value


def _page_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 500:
        _usage(f"--limit: must be a whole number from 1 to 500, not {value!r}")
    return int(value)


def _ordering(e: dict[str, Any]) -> str:
    """How an endpoint orders deliveries: ``no``, or ``yes, block`` / ``yes, skip`` (what a
    key does when its head's retries are spent)."""
    return f"yes, {e['on_exhausted']}" if e["ordered"] else "no"


# ---- deliveries --------------------------------------------------------------------------


@click.group()
def deliveries() -> None:
    """List and inspect deliveries."""


@deliveries.command("ls")
@click.option("--endpoint", "endpoint_id", help="Only this endpoint's (ep_…).")
@click.option("--business", "business_id", help="Only this business's.")
@click.option("--event", "event_id", help="Only this event's (evt_…).")
@click.option(
    "--status", type=click.Choice(["pending", "succeeded", "failed", "cancelled", "skipped"])
)
@click.option("--type", "event_type", help="Only this event type.")
@listing_options
def deliveries_ls(api: ApiClient, as_json: bool, **query: Any) -> None:
    """Deliveries, newest first."""
    page = api.request("GET", "/v1/deliveries", query=query)
    if as_json:
        _print_json(page)
        return
    rows = [
        [
            d["id"],
            d["status"],
            d["event_type"] or "",
            d["endpoint_id"],
            str(d["attempt_count"]),
            _short_time(d["updated_at"]),
            d["reason"] or "",
        ]
        for d in page["data"]
    ]
    _table(rows, ["delivery", "status", "type", "endpoint", "tries", "updated (UTC)", "reason"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@deliveries.command("show")
@click.argument("delivery_id")
@click.option("--json", "as_json", is_flag=True)
@api_options
def deliveries_show(api: ApiClient, delivery_id: str, as_json: bool) -> None:
    """A delivery and every attempt: status codes, errors, response bodies."""
    d = api.request("GET", f"/v1/deliveries/{delivery_id}")
    if as_json:
        _print_json(d)
        return
    click.echo(f"delivery  {d['id']}  {d['status']}" + (f" ({d['reason']})" if d["reason"] else ""))
    click.echo(f"event     {d['event_id']}  {d['event_type']}")
    click.echo(f"endpoint  {d['endpoint_id']}")
    if d["next_attempt_at"]:
        click.echo(f"next      {_short_time(d['next_attempt_at'])}")
    for a in d["attempts"]:
        when = _short_time(a["at"])
        status = a["status_code"] if a["status_code"] is not None else "-"
        chain = f" replay {a['replay']}" if a.get("replay") else ""
        click.echo(
            f"  #{a['attempt']}{chain}  {when}  {status}  {a['latency_ms']} ms  {a['outcome']}"
            + (f"  {a['error']}" if a["error"] else "")
        )
        if a["response_body"]:
            click.echo("      " + a["response_body"][:300].replace("\n", " "))


# ---- replay ------------------------------------------------------------------------------


@click.command()
@click.argument("delivery_id", required=False)
@click.option("--endpoint", "endpoint_id", help="Replay this endpoint's deliveries (ep_…).")
@click.option("--since", callback=_to_time, help="30s, 15m, 2h, 5d ago, or an RFC 3339 time.")
@click.option("--until", callback=_to_time, help="Likewise (default: now).")
@click.option("--all", "everything", is_flag=True, help="Succeeded deliveries too.")
@click.option("--dry-run", is_flag=True, help="Only count what would be replayed.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the replay.")
@api_options
def replay(
    api: ApiClient,
    delivery_id: str | None,
    endpoint_id: str | None,
    since: str | None,
    until: str | None,
    everything: bool,
    dry_run: bool,
    wait: bool,
) -> None:
    """Replay one delivery (DELIVERY_ID), or an endpoint's failed deliveries in a window.

    Exits 0 when everything replayed succeeded, 1 otherwise.
    """
    if delivery_id and endpoint_id:
        raise click.UsageError("give a delivery id or --endpoint, not both")
    if delivery_id:
        if since or until or everything or dry_run:
            raise click.UsageError("--since, --until, --all and --dry-run go with --endpoint")
        d = api.request("POST", f"/v1/deliveries/{delivery_id}/replay")
        click.echo(f"replaying {d['id']} (replay {d['replays']})")
        if wait:
            raise SystemExit(_follow_delivery(api, delivery_id))
        return
    if not endpoint_id:
        raise click.UsageError("give a delivery id, or --endpoint with --since")
    if not since:
        raise click.UsageError("--endpoint needs --since")
    body: dict[str, Any] = {"since": since, "status": "all" if everything else "failed"}
    if until:
        body["until"] = until
    if dry_run:
        body["dry_run"] = True
    started = api.request("POST", f"/v1/endpoints/{endpoint_id}/replay", body)
    if dry_run:
        click.echo(f"{_count(started['matched'], 'delivery')} would be replayed")
        return
    replay_id = started["replay_id"]
    note = " (already running)" if started.get("already_running") else ""
    click.echo(f"replay {replay_id}: {_count(started['matched'], 'delivery')}{note}")
    if not wait:
        return
    raise SystemExit(_follow_replay(api, replay_id, started["matched"]))


def _follow_delivery(api: ApiClient, delivery_id: str) -> int:
    while True:
        d = api.request("GET", f"/v1/deliveries/{delivery_id}")
        if d["status"] != "pending":
            click.echo(f"{d['id']}: {d['status']}")
            return 0 if d["status"] == "succeeded" else 1
        time.sleep(0.5)


def _follow_replay(api: ApiClient, replay_id: str, matched: int) -> int:
    progress: dict[str, Any] = {}
    with click.progressbar(length=max(matched, 1), label="replaying", show_pos=True) as bar:
        done = 0
        while True:
            progress = api.request("GET", f"/v1/replays/{replay_id}")
            ended = progress["succeeded"] + progress["failed"] + progress["cancelled"]
            finished = ended + progress["skipped"]
            bar.update(min(finished, matched) - done)
            done = min(finished, matched)
            if progress["state"] == "completed":
                break
            time.sleep(0.5)
    click.echo(
        f"replayed {progress['enqueued']} of {progress['matched']}: "
        f"{progress['succeeded']} succeeded, {progress['failed']} failed, "
        f"{progress['cancelled']} cancelled, {progress['skipped']} skipped"
    )
    return 0 if progress["failed"] == 0 and progress["cancelled"] == 0 else 1


# ---- events ------------------------------------------------------------------------------


@click.group()
def events() -> None:
    """Send and look up events."""


def _load_data(value: str) -> Any:
    """JSON given inline, or ``@file.json``."""
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise click.BadParameter(f"nests too deeply (at most {MAX_DEPTH} levels)") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object")
    return data


@events.command("send")
@click.option("--type", "event_type", required=True, help="e.g. payment.succeeded")
@click.option("--business", "business_id", required=True, help="e.g. bus_123")
@click.option("--data", "data_text", default="{}", show_default=True, help="JSON, or @file.json")
@click.option("--timestamp", help="RFC 3339 time the event happened (default: now).")
@click.option("--idempotency-key", help="Sending again with the same key creates nothing new.")
@click.option(
    "--ordering-key",
    help="Events with the same key reach ordered endpoints one at a time, in order.",
)
@api_options
def events_send(
    api: ApiClient,
    event_type: str,
    business_id: str,
    data_text: str,
    timestamp: str | None,
    idempotency_key: str | None,
    ordering_key: str | None,
) -> None:
    """Send one event."""
    try:
        data = _load_data(data_text)
    except click.BadParameter as exc:
        exc.param_hint = "'--data'"
        raise
    body: dict[str, Any] = {"business_id": business_id, "type": event_type, "data": data}
    if timestamp:
        body["timestamp"] = timestamp
    if ordering_key is not None:
        body["ordering_key"] = ordering_key
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    result = api.request("POST", "/v1/events", body, headers=headers)
    click.echo(f"{result['id']} → {_count(len(result['deliveries']), 'delivery')}")
    for delivery_id in result["deliveries"]:
        click.echo(f"  {delivery_id}")


@events.command("show")
@click.argument("event_id")
@api_options
def events_show(api: ApiClient, event_id: str) -> None:
    """An event and where it went."""
    _print_json(api.request("GET", f"/v1/events/{event_id}"))


# ---- endpoints ---------------------------------------------------------------------------


@click.group()
def endpoints() -> None:
    """Manage merchant endpoints."""


@endpoints.command("ls")
@click.option("--business", "business_id")
@click.option("--json", "as_json", is_flag=True)
@api_options
def endpoints_ls(api: ApiClient, business_id: str | None, as_json: bool) -> None:
    """Endpoints, of one business or all."""
    found = api.request("GET", "/v1/endpoints", query={"business_id": business_id})["data"]
    if as_json:
        _print_json(found)
        return
    rows = [
        [
            e["id"],
            e["business_id"],
            "disabled" if e["disabled"] else "active",
            " ".join(e["event_types"] or ["*"]),
            _ordering(e),
            e["url"],
        ]
        for e in found
    ]
    _table(rows, ["endpoint", "business", "state", "types", "ordered", "url"])


@endpoints.command("create")
@click.argument("endpoint_url", metavar="ENDPOINT_URL")
@click.option("--business", "business_id", required=True)
@click.option("--type", "event_types", multiple=True, help="Event type or family.* (repeat).")
@click.option("--description", default=None)
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Name=value sent on every delivery (repeat); values are stored encrypted.",
)
@click.option("--max-in-flight", type=click.IntRange(1, 1000), default=None)
@click.option(
    "--ordered", is_flag=True, help="Deliver the events that share an ordering key one at a time."
)
@click.option(
    "--on-exhausted",
    metavar="[block|skip]",
    callback=_on_exhausted,
    help="When a key's head fails for good: block the key (default) or skip to the next.",
)
@click.option(
    "--signing",
    type=click.Choice(["hmac", "ed25519"]),
    default="hmac",
    show_default=True,
    help="hmac: a whsec_ secret the receiver shares; ed25519: the receiver holds only a "
    "whpk_ public key.",
)
@api_options
def endpoints_create(
    api: ApiClient,
    business_id: str,
    endpoint_url: str,
    event_types: tuple[str, ...],
    description: str | None,
    headers: tuple[str, ...],
    max_in_flight: int | None,
    ordered: bool,
    on_exhausted: str | None,
    signing: str,
) -> None:
    """Create an endpoint delivering to ENDPOINT_URL; prints its signing secret (only now) or,
    for an ed25519 endpoint, its public key."""
    body: dict[str, Any] = {"business_id": business_id, "url": endpoint_url}
    if event_types:
        body["event_types"] = list(event_types)
    if description is not None:
        body["description"] = description
    if headers:
        pairs = [h.partition("=") for h in headers]
        if any(not sep or not name for name, sep, _ in pairs):
            raise click.BadParameter("use Name=value", param_hint="'--header'")
        names = [name for name, _, _ in pairs]
        if len(set(names)) < len(names):  # the API judges the rest; a dict would drop one
            twice = next(n for n in names if names.count(n) > 1)
            raise click.BadParameter(f"{twice} is given twice", param_hint="'--header'")
        body["headers"] = {name: value for name, _, value in pairs}
    if max_in_flight is not None:
        body["max_in_flight"] = max_in_flight
    if ordered:
        body["ordered"] = True
    if on_exhausted is not None:
        body["on_exhausted"] = on_exhausted
    if signing != "hmac":
        body["signing"] = signing
    created = api.request("POST", "/v1/endpoints", body)
    click.echo(f"{created['id']}  {_signing_key(created)}")


def _signing_key(endpoint: dict[str, Any]) -> str:
    """What a receiver verifies with: the public key (not secret), or the secret, once."""
    if endpoint.get("signing") == "ed25519":
        return f"public key {endpoint['public_key']}"
    return f"secret {endpoint['secret']}  (shown only now)"


@endpoints.command("update")
@click.argument("endpoint_id")
@click.option(
    "--ordered/--unordered",
    default=None,
    help="Deliver the events that share an ordering key one at a time, or not (the keys' "
    "waiting deliveries then go at once).",
)
@click.option(
    "--on-exhausted",
    metavar="[block|skip]",
    callback=_on_exhausted,
    help="When a key's head fails for good: block the key or skip to the next.",
)
@api_options
def endpoints_update(
    api: ApiClient, endpoint_id: str, ordered: bool | None, on_exhausted: str | None
) -> None:
    """Change how an endpoint orders deliveries."""
    body: dict[str, Any] = {}
    if ordered is not None:
        body["ordered"] = ordered
    if on_exhausted is not None:
        body["on_exhausted"] = on_exhausted
    if not body:
        _usage("nothing to change: give --ordered, --unordered or --on-exhausted")
    e = api.request("PATCH", f"/v1/endpoints/{_endpoint_id(endpoint_id)}", body)
    if e["ordered"]:
        click.echo(f"{e['id']} ordered per key (on exhausted: {e['on_exhausted']})")
    else:
        click.echo(f"{e['id']} unordered (when ordered, on exhausted: {e['on_exhausted']})")


@endpoints.command("show")
@click.argument("endpoint_id")
@api_options
def endpoints_show(api: ApiClient, endpoint_id: str) -> None:
    """An endpoint and its health."""
    _print_json(api.request("GET", f"/v1/endpoints/{endpoint_id}"))


@endpoints.command("disable")
@click.argument("endpoint_id")
@click.option("--reason", default=None)
@api_options
def endpoints_disable(api: ApiClient, endpoint_id: str, reason: str | None) -> None:
    """Stop deliveries; events that arrive meanwhile are kept as skipped, to replay later."""
    body = {"reason": reason} if reason else {}
    e = api.request("POST", f"/v1/endpoints/{endpoint_id}/disable", body)
    click.echo(f"{e['id']} disabled: {e['disabled_reason']}")


@endpoints.command("enable")
@click.argument("endpoint_id")
@api_options
def endpoints_enable(api: ApiClient, endpoint_id: str) -> None:
    """Deliver again (replay what was skipped with `hookgate replay --endpoint`)."""
    e = api.request("POST", f"/v1/endpoints/{endpoint_id}/enable")
    click.echo(f"{e['id']} enabled")


@endpoints.command("rotate-secret")
@click.argument("endpoint_id")
@api_options
def endpoints_rotate(api: ApiClient, endpoint_id: str) -> None:
    """A new signing secret; the old one keeps signing for the grace period."""
    e = api.request("POST", f"/v1/endpoints/{endpoint_id}/rotate-secret")
    click.echo(f"{e['id']}  new {_signing_key(e)}")


@endpoints.command("test")
@click.argument("endpoint_id")
@api_options
def endpoints_test(api: ApiClient, endpoint_id: str) -> None:
    """Send a signed hookgate.test event to this endpoint."""
    result = api.request("POST", f"/v1/endpoints/{endpoint_id}/test")
    click.echo(f"{result['event_id']} → {result['delivery_id']}")


# ---- ordering keys -----------------------------------------------------------------------


@click.group()
def ordering() -> None:
    """The blocked ordering keys of ordered endpoints: list them, skip a key's head."""


@ordering.command("ls")
@click.argument("endpoint_id")
@click.option(
    "--limit",
    metavar="1-500",
    callback=_page_size,
    help="One page of this many (default: every blocked key).",
)
@click.option("--cursor", help="Continue from a previous page's next cursor (with --limit).")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def ordering_ls(
    api: ApiClient, endpoint_id: str, limit: int | None, cursor: str | None, as_json: bool
) -> None:
    """An endpoint's blocked keys, longest blocked first: each waits for its head delivery to
    be replayed (`hookgate replay DELIVERY_ID`) or skipped (`hookgate ordering skip`)."""
    if cursor is not None and limit is None:
        _usage("--cursor goes with --limit")
    path = f"/v1/endpoints/{_endpoint_id(endpoint_id)}/ordering/blocked"
    if limit is not None:
        page = api.request("GET", path, query={"limit": limit, "cursor": cursor})
    else:
        page = _every_blocked_key(api, path)
    if as_json:
        _print_json(page)
        return
    if not page["data"]:
        click.echo("no blocked keys")
        return
    rows = [
        [b["key"], b["head_delivery_id"], _short_time(b["blocked_since"]), str(b["waiting"])]
        for b in page["data"]
    ]
    _table(rows, ["key", "head delivery", "blocked since (UTC)", "waiting"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


def _every_blocked_key(api: ApiClient, path: str) -> dict[str, Any]:
    """Every page, as one: a key unblocked while the pages are read shifts the later ones, so
    a key seen twice is kept once."""
    rows: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        page = api.request("GET", path, query={"cursor": cursor})
        for row in page["data"]:
            rows.setdefault(row["key"], row)
        cursor = page["next_cursor"]
        if not cursor:
            return {"data": list(rows.values()), "next_cursor": None}


@ordering.command("skip")
@click.argument("endpoint_id")
@click.argument("key")
@api_options
def ordering_skip(api: ApiClient, endpoint_id: str, key: str) -> None:
    """Move KEY past its head delivery, so the key's next delivery goes. The head stays
    failed (replayable); one still being retried ends failed, and one whose attempt is open
    right now is not skipped (exit 2: try again in a few seconds)."""
    endpoint_id = _endpoint_id(endpoint_id)
    quoted = urllib.parse.quote(_ordering_key(key), safe="")
    if quoted in (".", ".."):  # dot segments: the server would resolve them away unescaped
        quoted = quoted.replace(".", "%2E")
    result = api.request("POST", f"/v1/endpoints/{endpoint_id}/ordering/keys/{quoted}/skip")
    skipped, going = result["skipped_delivery_id"], result["next_delivery_id"]
    click.echo(
        f"skipped {skipped}, the head of key {key!r} (failed: `hookgate replay {skipped}` "
        "sends it again)"
    )
    if going:
        click.echo(f"next    {going} goes now")
    else:
        click.echo("next    none: no delivery of this key waits")


# ---- API keys ----------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (needs the admin scope)."""


def _expiry(value: str) -> str:
    """``30d`` (that long from now) or an RFC 3339 time → RFC 3339 UTC; exits 2 otherwise."""
    try:
        seconds = parse_time(value, time.time(), ahead=True)
    except ValueError:
        _usage(f"--expires: {value!r} is neither a duration like 30d nor an RFC 3339 time")
    try:
        return iso_ms(int(seconds * 1000)) or ""
    except (OverflowError, OSError, ValueError):  # beyond what a date can say (year 9999)
        _usage(f"--expires: {value!r} is too far away")


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses it, e.g. 'billing core'.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="admin, events:write, read, deliveries:replay, endpoints:write or "
    "portal-links:create (repeat, or a comma-separated list).",
)
@click.option("--business", "business_id", help="Bind the key to this business.")
@click.option("--expires", help="30d, 12h, … from now, or an RFC 3339 time (default: never).")
@api_options
def keys_create(
    api: ApiClient,
    name: str,
    scopes: tuple[str, ...],
    business_id: str | None,
    expires: str | None,
) -> None:
    """Create an API key; prints the key (only now: it is stored nowhere)."""
    body: dict[str, Any] = {
        "name": name,
        "scopes": [s.strip() for given in scopes for s in given.split(",") if s.strip()],
    }
    if business_id is not None:
        body["business_id"] = business_id
    if expires is not None:
        body["expires_at"] = _expiry(expires)
    created = api.request("POST", "/v1/api-keys", body)
    click.echo(f"{created['id']}  key {created['key']}  (shown only now)")


@keys.command("ls")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def keys_ls(api: ApiClient, as_json: bool) -> None:
    """Every API key: scopes, business, state, expiry and last use (never the key)."""
    found = api.request("GET", "/v1/api-keys")["data"]
    if as_json:
        _print_json(found)
        return
    rows = [
        [
            k["id"],
            k["name"],
            ",".join(k["scopes"]),
            k["business_id"] or "*",
            k["status"],
            _short_time(k["expires_at"]) if k["expires_at"] else "never",
            (
                f"{_short_time(k['last_used_at'])} from {k['last_used_from']}"
                if k["last_used_at"]
                else "never"
            ),
        ]
        for k in found
    ]
    _table(rows, ["key", "name", "scopes", "business", "state", "expires (UTC)", "last used"])


@keys.command("revoke")
@click.argument("key_id")
@api_options
def keys_revoke(api: ApiClient, key_id: str) -> None:
    """Revoke a key: every gateway refuses it within a second."""
    api.request("DELETE", f"/v1/api-keys/{key_id}")
    click.echo(f"{key_id} revoked")


# ---- audit log ---------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """Read the audit log: who changed what."""


@audit.command("ls")
@click.option("--business", "business_id", help="Only this business's.")
@click.option(
    "--actor", help="Only this actor's: key_…, bootstrap, ps_… (a portal session), system."
)
@click.option(
    "--action", type=click.Choice(ACTION_FILTERS), help="An action, or a family (endpoint.*)."
)
@listing_options
def audit_ls(api: ApiClient, as_json: bool, **query: Any) -> None:
    """Audit entries, newest first (failed and refused attempts too)."""
    page = api.request("GET", "/v1/audit-log", query=query)
    if as_json:
        _print_json(page)
        return
    rows = [
        [
            _short_time(e["at"]),
            f"{e['actor']['kind']}:{e['actor']['id']}",
            e["action"],
            " ".join(e["targets"]) or "-",
            e["business_id"] or "-",
            e["client"] or "-",
            e["outcome"]
            + (f" {e['status']}" if e["status"] else "")
            + (f" {e['detail']}" if e["detail"] else ""),
        ]
        for e in page["data"]
    ]
    _table(rows, ["time (UTC)", "actor", "action", "targets", "business", "client", "outcome"])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


@click.command("portal-link")
@click.argument("business_id")
@click.option("--ttl", help="How long the link stays valid, 1s to 7d (default 24h).")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def portal_link(api: ApiClient, business_id: str, ttl: str | None, as_json: bool) -> None:
    """A single-use link to the delivery portal for one business: give it to the merchant."""
    body = {} if ttl is None else {"ttl": ttl}
    path = f"/v1/businesses/{urllib.parse.quote(business_id, safe='')}/portal-links"
    link = api.request("POST", path, body)
    if as_json:
        _print_json(link)
        return
    click.echo(link["url"])
    click.echo(f"for {link['business_id']}, usable once, until {link['expires_at']}", err=True)


# ---- cells -------------------------------------------------------------------------------


@click.group()
def cells() -> None:
    """The cells (Redis groups) businesses are spread over: list them, find or move a business
    (needs the admin scope)."""


def _business_path(business_id: str) -> str:
    if not re.match(formats.BUSINESS_ID, business_id):
        _usage(f"BUSINESS_ID must be {formats.WORDS[formats.BUSINESS_ID]}")
    return f"/v1/businesses/{urllib.parse.quote(business_id, safe='')}/cell"


@cells.command("ls")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def cells_ls(api: ApiClient, as_json: bool) -> None:
    """Each cell, and whether it takes writes now (the first holds the directory)."""
    found = api.request("GET", "/v1/cells")
    if as_json:
        _print_json(found)
        return
    rows = [
        [
            c["name"],
            "yes" if c["first"] else "",
            "ready" if c["ready"] else "DOWN",
            c["reason"] or "",
        ]
        for c in found["data"]
    ]
    _table(rows, ["cell", "first", "state", "reason"])


@cells.command("where")
@click.argument("business_id")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def cells_where(api: ApiClient, business_id: str, as_json: bool) -> None:
    """The cell BUSINESS_ID lives in (and the ones it lived in before)."""
    placed = api.request("GET", _business_path(business_id))
    if as_json:
        _print_json(placed)
        return
    how = "pinned in the directory" if placed["pinned"] else "placed by hashing its id"
    click.echo(f"{placed['business_id']} lives in cell {placed['cell']} ({how})")
    pending = placed["pending_in_previous_cells"]
    for cell in placed["previous_cells"]:
        left = pending.get(cell)
        where = "unreachable now" if left is None else f"{_count(left, 'delivery')} to finish"
        click.echo(f"before: {cell} ({where})")


@cells.command("move")
@click.argument("business_id")
@click.argument("cell")
@click.option(
    "--force",
    is_flag=True,
    help="Move even while its ordered endpoints have deliveries pending (they may then arrive "
    "after their keys' next events).",
)
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def cells_move(api: ApiClient, business_id: str, cell: str, force: bool, as_json: bool) -> None:
    """Move BUSINESS_ID to CELL: its endpoints are copied there and its new events go there at
    once; its deliveries in the old cell finish there (run the old cell's workers until its
    pending count is 0). Refused while its ordered endpoints have deliveries pending."""
    if not re.match(formats.CELL_NAME, cell):
        _usage(f"CELL must be {formats.WORDS[formats.CELL_NAME]}")
    body: dict[str, Any] = {"cell": cell, **({"force": True} if force else {})}
    moved = api.request("PUT", _business_path(business_id), body)
    if as_json:
        _print_json(moved)
        return
    if not moved["moved"]:
        click.echo(f"{business_id} already lives in cell {moved['cell']}: nothing moved")
        return
    click.echo(
        f"moved {business_id} from cell {moved['from_cell']} to cell {moved['cell']}: "
        f"{_count(moved['endpoints'], 'endpoint')} copied, new events go to {moved['cell']}"
    )
    click.echo(
        f"{_count(moved['pending_in_previous_cell'], 'delivery')} still to finish in cell "
        f"{moved['from_cell']} (its workers deliver them)"
    )


def register(main: click.Group) -> None:
    for command in (
        deliveries,
        replay,
        events,
        endpoints,
        ordering,
        keys,
        audit,
        portal_link,
        cells,
    ):
        main.add_command(command)
