"""``hookgate trigger``: realistic example events, one type or a whole flow, sent to a running
gateway to try a receiver with; ``hookgate event-types ls``: the types the gateway accepts.

The examples are the billing platform's payloads (``gateway/core/fixtures.py``), made new for
every trigger. Everything checkable here (the overrides, the type, the flow) is checked before
the first event goes out: bad arguments exit 2 with a one-line reason and send nothing. The
gateway, the token and its answers are handled as by the other operator commands.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import textwrap
from datetime import UTC, datetime
from typing import Any

import click

from gateway.cli.client import ApiClient
from gateway.cli.commands import _count, _print_json, _usage, api_options
from gateway.core import fixtures
from gateway.core.catalog import RESERVED_FAMILY, load_catalog

DEFAULT_BUSINESS = "bus_demo"
"""The business ``hookgate dev`` makes its sample endpoint for (``dev.DEMO_BUSINESS``, not
imported: dev.py loads the server side, which a command that only sends does not need)."""

OVERRIDABLE = ("data", "timestamp")  # the rest of an event is the command's own choice


@dataclasses.dataclass(frozen=True)
class Override:
    given: str  # the path as given, for messages
    path: tuple[str, ...]
    value: Any


def _flow_lines() -> str:
    width = max(len(flow.name) for flow in fixtures.FLOWS)
    lines = [
        f"  {flow.name.ljust(width)}  " + " → ".join(step.type for step in flow.steps)
        for flow in fixtures.FLOWS
    ]
    return "\n".join(lines)


FLOWS_HELP = (
    "\b\nFlows (one subscription's events in order; their ordering_key is its id):\n"
    + _flow_lines()
)


@click.command(epilog=FLOWS_HELP)
@click.argument("event_type", required=False)
@click.option("--flow", "flow_name", metavar="NAME", help="Send a flow's events (below).")
@click.option(
    "--business",
    "business_id",
    metavar="BUS",
    envvar="HOOKGATE_BUSINESS",
    default=DEFAULT_BUSINESS,
    show_default=True,
    help="The business the events are for (env HOOKGATE_BUSINESS); `hookgate dev`'s sample "
    "endpoint is bus_demo's.",
)
@click.option(
    "--override",
    "overrides",
    multiple=True,
    metavar="PATH=VALUE",
    help="Change a field of every event sent: data.amount=5000, data.customer.email=a@b.c, "
    "timestamp=… (VALUE is read as JSON when it is JSON, else taken as a string; repeat).",
)
@click.option("--json", "as_json", is_flag=True, help="The API's answers as JSON, for scripts.")
@api_options
def trigger(
    api: ApiClient,
    event_type: str | None,
    flow_name: str | None,
    business_id: str,
    overrides: tuple[str, ...],
    as_json: bool,
) -> None:
    """Send an example EVENT_TYPE event (`hookgate event-types ls` lists them), or with
    --flow a sequence of one subscription's events, in order.

    Every trigger makes fresh ids (pay_…, sub_…, cus_…) and moves the times to now; the
    events of one flow share one customer and one subscription.
    """
    changes = [_parse_override(text) for text in overrides]
    if event_type is not None and flow_name is not None:
        _usage("give an event type or --flow, not both")
    now = datetime.now(UTC)
    if flow_name is not None:
        flow = _flow(flow_name)
        events = fixtures.events(flow.steps, business_id, now)
        _apply_all(events, changes)
        try:
            key = fixtures.ordering_key(events)
        except ValueError as exc:
            _usage(f"--override: flow {flow.name} is ordered by its subscription id: {exc}")
        for event in events:
            event["ordering_key"] = key
        header = f"business {business_id}, flow {flow.name}, ordering key {key}"
    elif event_type is not None:
        _check_type(api, event_type)
        events = fixtures.events((fixtures.Step(event_type),), business_id, now)
        _apply_all(events, changes)
        header = f"business {business_id}"
    else:
        names = ", ".join(flow.name for flow in fixtures.FLOWS)
        _usage(f"give an event type (hookgate event-types ls lists them) or --flow NAME ({names})")
    _send(api, events, header, as_json)


def _send(api: ApiClient, events: list[dict[str, Any]], header: str, as_json: bool) -> None:
    """Posts the events one after the other (a flow's order is the order they are taken in),
    printing each as it is taken: a failure part-way shows what went before it."""
    answers = []
    width = max(len(event["type"]) for event in events)
    for event in events:
        answer = api.request("POST", "/v1/events", event)
        answers.append(answer)
        if not as_json:
            if len(answers) == 1:
                click.echo(header)
            deliveries = _count(len(answer["deliveries"]), "delivery")
            click.echo(f"{event['type'].ljust(width)}  {answer['id']}  → {deliveries}")
    if as_json:
        _print_json(answers)


def _flow(name: str) -> fixtures.Flow:
    flow = fixtures.FLOWS_BY_NAME.get(name)
    if flow is None:
        names = ", ".join(flow.name for flow in fixtures.FLOWS)
        _usage(f"--flow: unknown flow {name!r}; the flows are {names}")
    return flow


def _check_type(api: ApiClient, event_type: str) -> None:
    """Exits 2 unless there is an example of ``event_type``, naming the closest known types.

    Only a type without an example costs a request: the gateway's list, for the types
    registered there (and a catalogue newer than this command's)."""
    if event_type.startswith(RESERVED_FAMILY + "."):
        _usage(
            f"{event_type}: the {RESERVED_FAMILY}.* family is hookgate's own and cannot be "
            "sent (hookgate endpoints test EP sends hookgate.test)"
        )
    if event_type in fixtures.example_types():
        return
    listed = {t["name"] for t in api.request("GET", "/v1/event-types")["data"]}
    if event_type in listed:
        _usage(
            f"{event_type} has no example event: send one with hookgate events send "
            f"--type {event_type} --data …"
        )
    known = sorted(load_catalog() | listed)
    close = difflib.get_close_matches(event_type.lower(), known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    _usage(f"unknown event type {event_type!r}{hint} (hookgate event-types ls lists them)")


def _parse_override(text: str) -> Override:
    """``PATH=VALUE`` → an override; exits 2 on a path that cannot name a field to change."""
    given, sep, raw = text.partition("=")
    if not sep:
        _usage(f"--override {text!r}: expected PATH=VALUE, e.g. data.amount=5000")
    path = tuple(given.split("."))
    if "" in path:
        _usage(f"--override {given!r}: the path has an empty part; write e.g. data.customer.email")
    if path[0] not in OVERRIDABLE:
        _usage(
            f"--override {given}: only data, its fields and timestamp can be changed "
            "(--business chooses business_id)"
        )
    value = _value(given, raw)
    if path == ("data",) and not isinstance(value, dict):
        _usage("--override data: the value must be a JSON object")
    return Override(given, path, value)


def _value(given: str, raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_not_json)
    except ValueError:  # not JSON (NaN and Infinity neither): the text itself
        return raw
    except RecursionError:
        _usage(f"--override {given}: the value nests too deeply")


def _not_json(constant: str) -> Any:
    raise ValueError(constant)


def _apply_all(events: list[dict[str, Any]], changes: list[Override]) -> None:
    for event in events:
        for change in changes:
            _apply(event, change)


def _apply(event: dict[str, Any], change: Override) -> None:
    """Sets the field ``change`` names; the fields on its way must exist and be objects."""
    target = event
    for depth, part in enumerate(change.path[:-1], start=1):
        where = ".".join(change.path[:depth])
        if part not in target:
            _usage(
                f"--override {change.given}: {event['type']} has no {where} (only the last "
                "part of a path may be new)"
            )
        target = target[part]
        if not isinstance(target, dict):
            _usage(f"--override {change.given}: {where} is {_kind(target)}, not an object")
    target[change.path[-1]] = copy.deepcopy(change.value)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# ---- event types -------------------------------------------------------------------------


@click.group("event-types")
def event_types() -> None:
    """The event types the gateway accepts."""


@event_types.command("ls")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON, for scripts.")
@api_options
def event_types_ls(api: ApiClient, as_json: bool) -> None:
    """The catalogue's types by family, then those registered on this gateway."""
    found = api.request("GET", "/v1/event-types")["data"]
    if as_json:
        _print_json(found)
        return
    families: dict[str, list[str]] = {}
    for t in found:
        if t["source"] == "catalog":
            families.setdefault(t["name"].split(".", 1)[0], []).append(t["name"])
    click.echo("catalogue")
    width = max((len(family) for family in families), default=0)
    for family, names in families.items():
        lead = f"  {family.ljust(width)}  "
        indent = " " * len(lead)
        click.echo(
            textwrap.fill(" ".join(names), 100, initial_indent=lead, subsequent_indent=indent)
        )
    registered = [t for t in found if t["source"] == "registered"]
    click.echo("registered")
    if not registered:
        click.echo("  none (POST /v1/event-types registers one)")
    width = max((len(t["name"]) for t in registered), default=0)
    for t in registered:
        click.echo(f"  {t['name'].ljust(width)}  {t['description']}".rstrip())


def register(main: click.Group) -> None:
    for command in (trigger, event_types):
        main.add_command(command)
