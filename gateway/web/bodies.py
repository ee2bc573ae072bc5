"""JSON bodies through the schemas: requests decoded into their Struct, msgspec's errors turned
into the API's, answers converted to their Struct and encoded.

A body that is not JSON (bad syntax, not UTF-8, ``NaN``, a number beyond a double, a lone
surrogate, nesting too deep for the parser) is ``400 invalid_json``; JSON of the wrong shape is
``422 validation_failed``, its message ``"<field>: <what it must be>"`` and ``details.field`` the
path (``events[3].type``). What the field must be is read from the same Struct the body was
decoded into, so the words cannot drift from the rule.

Event data nested deeper than ``limits.MAX_DEPTH`` is such a 422 (``validation.event_of``):
valid JSON, against a documented rule of one field, which a batch refuses item by item. Only
nesting so deep that the parser gives up before any check can run (near Python's recursion
limit, about 1000 levels) is a 400 here: no field of it can be named, and a batch envelope
cannot even be split into its items.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from msgspec import inspect

from gateway.core import codec
from gateway.core.errors import ValidationFailed
from gateway.core.limits import MAX_DEPTH
from gateway.web.errors import BadRequest, json_response
from gateway.web.schemas import WORDS

T = TypeVar("T")

_ANY = msgspec.json.Decoder()
_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|(\[\.\.\.\])")
_WHERE = " - at `"
_IN_KEY = "key` in `"
_MISSING = re.compile(r"^Object missing required field `(.*)`$", re.S)
_UNKNOWN = re.compile(r"^Object contains unknown field `(.*)`$", re.S)


def decode(
    raw: bytes | bytearray | msgspec.Raw, decoder: msgspec.json.Decoder[T], prefix: str = ""
) -> T:
    """``raw`` decoded into the decoder's type; raises ``BadRequest`` (400) when it is not
    JSON, else ``ValidationFailed`` (422) naming the first field that does not fit, after
    ``prefix`` (``"events[3]."``)."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec stops at the first field that does not fit, before it has read the rest:
        # a syntax error further on must still be a 400, as it is for any other body.
        check_json(raw)
        raise refusal(exc, decoder.type, prefix) from None
    except msgspec.DecodeError as exc:
        raise not_json(raw, str(exc)) from None
    except RecursionError:
        raise _too_deep() from None


def convert(value: Any, shape: type[T], prefix: str = "", *, strict: bool = True) -> T:
    """``value`` (parsed JSON, a form, a query string) as ``shape``; raises
    ``ValidationFailed`` as ``decode`` does. ``strict=False`` reads numbers and booleans from
    strings (query strings)."""
    try:
        return msgspec.convert(value, shape, strict=strict)
    except msgspec.ValidationError as exc:
        raise refusal(exc, shape, prefix) from None


def check_json(raw: bytes | bytearray | msgspec.Raw) -> None:
    """Raises ``BadRequest`` (400) unless ``raw`` is one JSON value msgspec reads exactly."""
    try:
        _ANY.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:  # the latter: 1e400
        raise not_json(raw, str(exc)) from None
    except RecursionError:
        raise _too_deep() from None


def not_json(raw: bytes | bytearray | msgspec.Raw, reason: str) -> BadRequest:
    """The 400 for a body msgspec refused as JSON, in the json module's words where it has them
    (a line and column; a lone surrogate named as one, where msgspec may say only that the
    input was truncated)."""
    try:
        codec.loads(bytes(memoryview(raw)))
    except RecursionError:
        return _too_deep()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = str(exc)
    else:  # UTF-16 or -32, or a byte order mark: JSON between systems is UTF-8 (RFC 8259)
        reason = f"{reason} (it must be UTF-8, with no byte order mark)"
    return BadRequest(f"the body is not valid JSON: {reason}", code="invalid_json")


def _too_deep() -> BadRequest:
    return BadRequest(
        f"the body nests too deeply (event data may nest at most {MAX_DEPTH} levels)",
        code="invalid_json",
    )


def answer(view: Any, shape: type[Any], status: int = 200) -> web.Response:
    """``view`` (a store's dicts and lists) converted to ``shape`` and encoded: a field the
    view has and the schema does not, or a value of another type, raises instead of reaching
    the client undocumented."""
    return json_response(msgspec.convert(view, shape), status=status)


# ---- msgspec's errors as the API's -------------------------------------------------------


def refusal(exc: msgspec.ValidationError, shape: Any, prefix: str = "") -> ValidationFailed:
    """msgspec's ``"<problem> - at `$.path`"`` as ``ValidationFailed("<prefix><path>", …)``."""
    problem, path, of_key = _split(str(exc))
    node: inspect.Type = _info(shape)
    field = prefix
    every = ""  # "every name " / "every value ": the path went into a mapping
    for name, index, entry in _SEGMENT.findall(path):
        node = _step(node, name, index, entry)
        if name:
            field = f"{field}.{name}" if field and not field.endswith(".") else field + name
        elif index:
            field = field.rstrip(".") + f"[{index}]"
        else:
            every = "every value "
    if of_key:
        node = _member(node, inspect.DictType).key_type
        every = "every name "
    if (match := _MISSING.match(problem)) is not None:
        return ValidationFailed(_join(field, match[1]), "is required")
    if (match := _UNKNOWN.match(problem)) is not None:
        refused = getattr(_member(node, inspect.StructType).cls, "refused", {})
        name = match[1]
        return ValidationFailed(
            _join(field, name or '""'), refused.get(name, "is not a known field")
        )
    return ValidationFailed(field.rstrip(".") or "body", f"{every}must be {words(node)}")


def _split(message: str) -> tuple[str, str, bool]:
    """(problem, ``$``-path, whether a mapping's key is the problem) of msgspec's message."""
    problem, sep, where = message.rpartition(_WHERE)
    if not sep:
        return message, "$", False
    where = where.removesuffix("`")
    if where.startswith(_IN_KEY):
        return problem, where[len(_IN_KEY) :], True
    return problem, where, False


def _join(field: str, name: str) -> str:
    if not field:
        return name
    return field + name if field.endswith(".") else f"{field}.{name}"


@functools.cache
def _info(shape: Any) -> inspect.Type:
    return inspect.type_info(shape)


def _member(node: inspect.Type, kind: type[Any]) -> Any:
    """``node`` as a ``kind``: its ``Metadata`` unwrapped, its member of that kind in a union."""
    while isinstance(node, inspect.Metadata):
        node = node.type
    if isinstance(node, inspect.UnionType):
        for member in node.types:
            found = _member(member, kind)
            if isinstance(found, kind):
                return found
    return node


def _step(node: inspect.Type, name: str, index: str, entry: str) -> inspect.Type:
    if name:
        struct = _member(node, inspect.StructType)
        field: inspect.Field = next(f for f in struct.fields if f.encode_name == name)
        return field.type
    if index:
        return _member(node, inspect.ListType).item_type  # type: ignore[no-any-return]
    return _member(node, inspect.DictType).value_type  # type: ignore[no-any-return]


def words(node: inspect.Type) -> str:
    """What a value of this type must be, in words ("a whole number from 1 to 1000")."""
    if isinstance(node, inspect.Metadata):
        return words(node.type)
    if isinstance(node, inspect.UnionType):
        alternatives = [words(t) for t in node.types if not isinstance(t, inspect.NoneType)]
        return " or ".join(dict.fromkeys(alternatives)) or "null"
    if isinstance(node, inspect.StrType):
        return _str_words(node)
    if isinstance(node, inspect.IntType):
        return "a whole number" + _range(node.ge, node.le)
    if isinstance(node, inspect.FloatType):
        whole = node.multiple_of == 1  # schemas.InFlight
        return ("a whole number" if whole else "a number") + _range(node.ge, node.le)
    if isinstance(node, inspect.BoolType):
        return "true or false"
    if isinstance(node, inspect.LiteralType):
        values = [f'"{v}"' if isinstance(v, str) else str(v) for v in node.values]
        return " or ".join(values) if len(values) <= 2 else "one of " + ", ".join(values)
    if isinstance(node, inspect.ListType):
        return "a list" + _count(node.min_length, node.max_length, "items")
    if isinstance(node, inspect.DictType):
        return "a JSON object" + _count(node.min_length, node.max_length, "entries")
    if isinstance(node, inspect.StructType):
        return "a JSON object"
    if isinstance(node, inspect.NoneType):
        return "null"
    return "a JSON value"


def _str_words(node: inspect.StrType) -> str:
    if node.pattern is None:
        return "a string" + _count(node.min_length, node.max_length, "characters")
    text = WORDS.get(node.pattern, f"a string matching {node.pattern}")
    if node.max_length is not None:
        text += f"; at most {node.max_length} characters"
    return text


def _range(low: int | float | None, high: int | float | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    if high is not None:
        return f" of at most {high}"
    return ""


def _count(low: int | None, high: int | None, unit: str) -> str:
    if low and high is not None:
        return f" of {low} to {high} {unit}"
    if high is not None:
        return f" of at most {high} {unit}"
    if low:
        return f" of at least {low} {unit}"
    return ""
