"""``hookgate listen --forward-to URL``: a remote gateway's deliveries, forwarded to a receiver
on this machine, which the gateway cannot reach itself (a laptop behind NAT).

The command opens a listen session (``PUT /v1/listen-sessions/{name}``: the same one on every
run, unless ``--session`` names another), holds its WebSocket, POSTs each delivery to
``--forward-to`` with exactly the headers and body the gateway signed, and answers the gateway
with what the receiver said, which is recorded as the attempt's outcome like any endpoint's.
While it is not connected the session's deliveries wait on the gateway, spending no attempt,
and resume in order when it connects again: nothing is dropped around a reconnect.

Bad arguments, an unreachable gateway and a token it refuses exit 2 with one line; Ctrl-C
exits 0. A lost connection is retried for as long as the command runs (the deliveries wait
for a day), except that a newer ``hookgate listen`` of the same session ends this one (exit 1).
"""

from __future__ import annotations

import getpass
import re
from typing import Any
from urllib.parse import quote, urlsplit

import click

from gateway.cli.client import ApiClient, ApiFailure
from gateway.cli.commands import _usage, api_options
from gateway.cli.trigger import DEFAULT_BUSINESS
from gateway.core import formats, listen
from gateway.core.catalog import is_pattern

_EVENT_TYPE_RE = re.compile(formats.EVENT_TYPE)
_BUSINESS_RE = re.compile(formats.BUSINESS_ID)


# ---- arguments ---------------------------------------------------------------------------


def _forward_target(value: str) -> str:
    """``--forward-to``: an http(s) URL with a host; exits 2 otherwise."""
    hint = "e.g. http://localhost:3000/webhooks"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        _usage(f"--forward-to {value!r}: {exc} ({hint})")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _usage(f"--forward-to {value!r}: must be an http:// or https:// URL with a host ({hint})")
    if port == 0:
        _usage(f"--forward-to {value!r}: port 0 cannot be connected to")
    return value


def _event_types(value: str | None) -> tuple[str, ...]:
    """``--events 'payment.*,subscription.renewed'``; none: every type."""
    if value is None:
        return ()
    found: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if not (is_pattern(item) or _EVENT_TYPE_RE.match(item)):
            _usage(f"--events: {item!r} is neither an event type nor a family like payment.*")
        if item not in found:
            found.append(item)
    if not found:
        _usage("--events: name at least one event type or family (leave it out for every type)")
    return tuple(found)


def _session_name(value: str | None, business_id: str) -> str:
    if value is None:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no user name in the environment nor the password file
            user = "user"
        return listen.default_session(business_id, user)
    if not listen.valid_name(value):
        _usage(f"--session {value!r}: must be {formats.WORDS[formats.LISTEN_SESSION]}")
    return value


def _open(api: ApiClient, name: str, business_id: str, types: tuple[str, ...]) -> Any:
    """The session (``PUT /v1/listen-sessions/{name}``); an unreachable gateway exits 2."""
    body: dict[str, Any] = {"business_id": business_id}
    if types:
        body["event_types"] = list(types)
    try:
        return api.request("PUT", f"/v1/listen-sessions/{quote(name, safe='')}", body)
    except ApiFailure as exc:
        if exc.status == 0:
            _usage(exc.message)
        raise  # api_options says what a refusal means


@click.command()
@click.option(
    "--forward-to",
    metavar="URL",
    help="Where to POST each delivery, e.g. http://localhost:3000/webhooks.",
)
@click.option(
    "--events",
    metavar="TYPES",
    help="Comma-separated event types or families, e.g. 'payment.*,subscription.*' "
    "(default: every type).",
)
@click.option(
    "--business",
    "business_id",
    metavar="BUS",
    envvar="HOOKGATE_BUSINESS",
    default=DEFAULT_BUSINESS,
    show_default=True,
    help="The business whose events to receive (env HOOKGATE_BUSINESS).",
)
@click.option(
    "--session",
    "session",
    metavar="NAME",
    help="The listen session (default: <user>-<business>, the same on every run, so a new "
    "run resumes where the last one stopped).",
)
@click.option(
    "--print-secret",
    is_flag=True,
    help="Print only the session's whsec_ secret, for the receiver's configuration, and exit.",
)
@api_options
def listen_command(
    api: ApiClient,
    forward_to: str | None,
    events: str | None,
    business_id: str,
    session: str | None,
    print_secret: bool,
) -> None:
    """Forward a gateway's deliveries to a receiver on this machine.

    Deliveries come one at a time, in the order the events were accepted, signed as for any
    endpoint: configure the receiver with the secret printed first. While this is not running
    they wait on the gateway (by default for a day after the last connection) and come when it
    runs again; every attempt is recorded (hookgate deliveries ls --endpoint <session id>).
    """
    if not print_secret:
        if forward_to is None:
            _usage("--forward-to is required, e.g. --forward-to http://localhost:3000/webhooks")
        _forward_target(forward_to)
    types = _event_types(events)
    if not _BUSINESS_RE.match(business_id):
        _usage(f"--business {business_id!r}: must be {formats.WORDS[formats.BUSINESS_ID]}")
    name = _session_name(session, business_id)
    opened = _open(api, name, business_id, types)
    if print_secret:
        click.echo(opened["secret"])
        return
    assert forward_to is not None
    if opened["disabled"]:
        _usage(
            f"listen session {name} ({opened['id']}) is disabled ({opened['disabled_reason']}): "
            f"enable it with hookgate endpoints enable {opened['id']}"
        )
    _banner(opened, name, business_id, types)
    import asyncio

    from gateway.cli.forwarder import Listener, Stop

    listener = Listener(api, name, business_id, types, forward_to, opened)
    try:
        code = asyncio.run(listener.main())
    except KeyboardInterrupt:
        code = 0
    except Stop as stop:
        click.echo(f"hookgate: {stop.message}", err=True)
        raise SystemExit(stop.code) from None
    if code == 0:
        click.echo("stopped")
    raise SystemExit(code)


def _banner(session: dict[str, Any], name: str, business_id: str, types: tuple[str, ...]) -> None:
    state = "new" if session["created"] else "resumed"
    click.echo(f"session   {name} ({session['id']}, {state})")
    click.echo(f"business  {business_id}")
    click.echo(f"events    {', '.join(types) if types else 'every type'}")
    click.echo(f"secret    {session['secret']}   (configure your receiver with it)")
    click.echo(
        "          deliveries wait while listen is not running; the session is deleted 24 h "
        "after its last connection"
    )


def register(main: click.Group) -> None:
    main.add_command(listen_command, "listen")
