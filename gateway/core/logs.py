"""structlog set-up: JSON lines in production, readable lines in a terminal.

Every line, structlog's or a library's through stdlib logging, passes ``safe_event`` and a
bounded renderer: exceptions are described by their class (and a Redis reply's error code),
never by their text, because redis-py puts the failing command and all its arguments (event
bodies, idempotency keys, sealed secrets) into the text of a pipeline's error; strings are cut
to ``MAX_VALUE`` and a line to ``MAX_LINE``, so no one request can write a megabyte of log.
"""

from __future__ import annotations

import errno
import logging
import re
import sys
import traceback
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog

MAX_VALUE = 512  # characters of one string value (the event name included)
MAX_TRACEBACK = 2560  # characters of a traceback, its innermost frames kept: room in a line
MAX_LINE = 4096  # bytes of one rendered line
MAX_ITEMS = 32  # items of a list or dict value that are logged
MAX_DEPTH = 4

# redis-py turns these replies into exception classes and drops the code from the message.
# Named, not imported: the core knows no Redis.
_REDIS_CODES = {
    "OutOfMemoryError": "OOM",
    "ReadOnlyError": "READONLY",
    "NoScriptError": "NOSCRIPT",
    "ExecAbortError": "EXECABORT",
    "BusyLoadingError": "LOADING",
    "NoPermissionError": "NOPERM",
}
_PIPELINE = " of pipeline caused error: "
_CODE = re.compile(r"[A-Z][A-Z_]{1,31}")


def _is_redis_error(exc: BaseException) -> bool:
    return any(
        cls.__name__ == "RedisError" and cls.__module__.startswith("redis")
        for cls in type(exc).__mro__
    )


def _redis_code(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__name__ in _REDIS_CODES and cls.__module__.startswith("redis"):
            return _REDIS_CODES[cls.__name__]
    return _reply_code(exc.args[0] if exc.args and isinstance(exc.args[0], str) else "")


def _reply_code(message: str) -> str:
    # A pipeline's error is "Command # n (<the command and its arguments>) of pipeline caused
    # error: <Redis's reply>": only the word that opens the reply is Redis's own.
    reply = message.rpartition(_PIPELINE)[2].lstrip("('\" ")
    match = _CODE.match(reply)
    if match is None or (match.end() < len(reply) and not reply[match.end()].isspace()):
        return ""
    return match[0]


def describe_error(exc: BaseException) -> str:
    """An exception as it may be logged or shown: its class, with a Redis reply's error code
    (``OOM (OutOfMemoryError)``, ``NOREPLICAS (ResponseError)``) or an OS error's errno name,
    never its text (which can quote a command's arguments, a body, a header or a secret)."""
    name = type(exc).__name__
    if _is_redis_error(exc):
        code = _redis_code(exc)
        return f"{code} ({name})" if code else name
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        return f"{name} ({errno.errorcode.get(exc.errno, exc.errno)})"
    return name


# Script names by SHA1, as the store registers them: a refused EVALSHA is logged by name.
_SCRIPT_NAMES: dict[str, str] = {}
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z_]{0,31}")


def name_script(sha: str, name: str) -> None:
    _SCRIPT_NAMES[sha] = name


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What a log line may say of ``exc``: ``error`` (``describe_error``) and, when it is the
    error of one command of a Redis pipeline, that command's name (a script's for EVALSHA) and
    the size of its arguments, never the arguments."""
    fields: dict[str, Any] = {"error": describe_error(exc)}
    message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    head, found, _ = message.rpartition(_PIPELINE)
    if not (found and _is_redis_error(exc) and head.startswith("Command # ")):
        return fields
    command = head[head.find("(") + 1 : -1]  # "Command # n (<command>)"
    words = command.split(" ", 2)
    if _COMMAND_NAME.fullmatch(words[0]):
        fields["command"] = words[0].upper()
        script = _SCRIPT_NAMES.get(words[1]) if len(words) > 1 else None
        if fields["command"] == "EVALSHA" and script is not None:
            fields["script"] = script
    fields["argument_chars"] = max(len(command) - len(words[0]) - 1, 0)
    return fields


def safe_traceback(exc: BaseException) -> str:
    """A traceback of ``exc`` and the exceptions it was raised from or during, with every
    exception described by ``describe_error``: frames name code, not data."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    parts: list[str] = []
    for i, one in enumerate(reversed(chain)):
        if i:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(one.__traceback__))
        parts.append(describe_error(one) + "\n")
    text = "".join(parts)
    if len(text) > MAX_TRACEBACK:
        text = "…" + text[-MAX_TRACEBACK:]
    return text


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if _PIPELINE in value:  # a str(exc) of a Redis pipeline's error, quoting the command
            return f"Redis pipeline error {_reply_code(value)}".rstrip()
        if len(value) <= MAX_VALUE:
            return value
        return f"{value[:MAX_VALUE]}…(+{len(value) - MAX_VALUE} chars)"
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)  # orjson refuses integers beyond 64 bits
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, BaseException):
        return describe_error(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"  # raw bytes are bodies: their size, never their content
    if depth >= MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        items = list(value.items())
        bounded = {str(k)[:64]: _bounded(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            bounded["…"] = f"+{len(items) - MAX_ITEMS} items"
        return bounded
    if isinstance(value, (list, tuple, set, frozenset)):
        listed = [_bounded(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            listed.append(f"…+{len(value) - MAX_ITEMS} items")
        return listed
    return _bounded(str(value), depth)


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple):
        found = exc_info[1] if len(exc_info) > 1 else None
        return found if isinstance(found, BaseException) else None
    return sys.exc_info()[1] if exc_info else None


def safe_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: every value bounded, every exception described by its class, and
    ``exc_info`` (``log.exception``) turned into ``safe_traceback``."""
    exc = _exception_of(event_dict.pop("exc_info", None))
    event_dict.pop("stack_info", None)
    for key, value in event_dict.items():
        if not key.startswith("_"):  # ProcessorFormatter's own _record and _from_structlog
            event_dict[key] = _bounded(value)
    if exc is not None:
        event_dict["exception"] = safe_traceback(exc)
    return event_dict


def _foreign_message(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A library's stdlib record (arq, aiohttp), its message formatted again with any
    exception among its arguments described by its class: arq logs ``"%s: %s", name, exc``."""
    args = event_dict.pop("positional_args", ())
    record = event_dict.get("_record")
    if args and isinstance(record, logging.LogRecord):
        safe: Any = args
        if isinstance(args, tuple):
            safe = tuple(describe_error(a) if isinstance(a, BaseException) else a for a in args)
        try:
            event_dict["event"] = str(record.msg) % safe
        except (TypeError, ValueError, KeyError):
            event_dict["event"] = str(record.msg)
    return event_dict


Renderer = Callable[[Any, str, MutableMapping[str, Any]], str]
_KEPT = ("event", "level", "timestamp", "logger")


def bounded_renderer(renderer: Renderer) -> Renderer:
    """``renderer``, its line held to ``MAX_LINE`` bytes: the largest values give way first."""

    def render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
        # Renderers may pop keys (the console one does): each try renders a copy.
        line = renderer(logger, method, dict(event_dict))
        if _fits(line):
            return line
        slim = dict(event_dict)
        for key in sorted(slim, key=lambda k: len(str(slim[k])), reverse=True):
            if key in _KEPT or key.startswith("_"):
                continue
            slim[key] = f"<dropped: {len(str(slim[key]))} chars>"
            slim["truncated"] = True
            line = renderer(logger, method, dict(slim))
            if _fits(line):
                return line
        last = {k: str(slim[k])[:200] for k in _KEPT if k in slim}
        return renderer(logger, method, {**last, "truncated": True})

    return render


def _fits(line: str) -> bool:
    return len(line) * 4 <= MAX_LINE or len(line.encode()) <= MAX_LINE


def _render_json(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    # orjson: about 3x faster than the standard library, which shows in a worker logging
    # every attempt; anything it cannot serialise is logged as its str().
    return orjson.dumps(event_dict, default=str).decode()


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Libraries' stdlib records, through the same safety and bounds as structlog's."""


def configure(fmt: str, level: int = logging.INFO) -> None:
    renderer: Renderer = (
        _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    render = bounded_renderer(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            safe_event,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # arq logs every job start and end through stdlib logging; keep only its warnings.
    handler = _StdlibHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                _foreign_message,
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                safe_event,
                render,
            ],
            pass_foreign_args=True,
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
