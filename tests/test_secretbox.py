"""Endpoint secrets at rest: AES-256-GCM tokens bound to the endpoint they belong to."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import HookgateError
from gateway.core.secretbox import SecretBox, SecretBoxError

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
CONTEXT = b"ep_01HZX"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _raw(token: str) -> bytearray:
    body = token.removeprefix("v1.")
    return bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _token(raw: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip() -> None:
    box = SecretBox(KEY_A)
    token = box.seal(SECRET, context=CONTEXT)
    assert token.startswith("v1.")
    assert box.open(token, context=CONTEXT) == SECRET


@given(st.text(), st.binary(max_size=64))
def test_round_trip_any_text(plaintext: str, context: bytes) -> None:
    box = SecretBox(KEY_A)
    assert box.open(box.seal(plaintext, context=context), context=context) == plaintext


def test_every_seal_is_fresh_and_hides_the_plaintext() -> None:
    box = SecretBox(KEY_A)
    tokens = {box.seal(SECRET, context=CONTEXT) for _ in range(50)}
    assert len(tokens) == 50
    nonces = {bytes(_raw(token)[4:16]) for token in tokens}
    assert len(nonces) == 50
    b64_forms = {
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
    }
    for token in tokens:
        assert SECRET not in token
        assert SECRET.encode() not in _raw(token)
        assert not any(form[:16] in token for form in b64_forms)


def test_wrong_key() -> None:
    token = SecretBox(KEY_A).seal(SECRET, context=CONTEXT)
    with pytest.raises(SecretBoxError, match="unknown key"):
        SecretBox(KEY_B).open(token, context=CONTEXT)


def test_wrong_key_with_forged_key_id() -> None:
    # Relabel a token with B's key id: the id only picks the key, the tag still decides.
    token = SecretBox(KEY_A).seal(SECRET, context=CONTEXT)
    forged = _raw(token)
    forged[:4] = _raw(SecretBox(KEY_B).seal("x", context=CONTEXT))[:4]
    with pytest.raises(SecretBoxError, match="does not open"):
        SecretBox(KEY_B).open(_token(bytes(forged)), context=CONTEXT)


def test_wrong_context() -> None:
    box = SecretBox(KEY_A)
    token = box.seal(SECRET, context=b"ep_one")
    with pytest.raises(SecretBoxError, match="does not open"):
        box.open(token, context=b"ep_two")
    with pytest.raises(SecretBoxError):
        box.open(token, context=b"")


@given(st.data())
def test_any_flipped_bit_is_detected(data: st.DataObject) -> None:
    box = SecretBox(KEY_A)
    token = box.seal(SECRET, context=CONTEXT)
    raw = _raw(token)
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SecretBoxError):
        box.open(_token(bytes(raw)), context=CONTEXT)


@given(st.data())
def test_any_changed_character_is_detected(data: st.DataObject) -> None:
    box = SecretBox(KEY_A)
    token = box.seal(SECRET, context=CONTEXT)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != token[index]))
    with pytest.raises(SecretBoxError):
        box.open(token[:index] + replacement + token[index + 1 :], context=CONTEXT)


@given(st.data())
def test_truncated_or_extended_is_detected(data: st.DataObject) -> None:
    box = SecretBox(KEY_A)
    token = box.seal(SECRET, context=CONTEXT)
    cut = data.draw(st.integers(0, len(token) - 1))
    with pytest.raises(SecretBoxError):
        box.open(token[:cut], context=CONTEXT)
    raw = _raw(token)
    with pytest.raises(SecretBoxError):
        box.open(_token(bytes(raw[:-1])), context=CONTEXT)
    with pytest.raises(SecretBoxError):
        box.open(_token(bytes(raw) + b"\x00"), context=CONTEXT)


@given(st.text())
def test_garbage_never_opens_and_raises_only_secretbox_error(text: str) -> None:
    box = SecretBox(KEY_A)
    with pytest.raises(SecretBoxError):
        box.open(text, context=CONTEXT)
    with pytest.raises(SecretBoxError):
        box.open("v1." + text, context=CONTEXT)


@given(st.binary(max_size=120))
def test_random_bytes_behind_a_valid_prefix_never_open(raw: bytes) -> None:
    box = SecretBox(KEY_A)
    with pytest.raises(SecretBoxError):
        box.open(_token(raw), context=CONTEXT)


def test_secretbox_error_is_a_hookgate_error() -> None:
    assert issubclass(SecretBoxError, HookgateError)


def test_rotation() -> None:
    old_box = SecretBox(KEY_A)
    old_token = old_box.seal(SECRET, context=CONTEXT)
    rotated = SecretBox(KEY_B, KEY_A)
    assert rotated.open(old_token, context=CONTEXT) == SECRET
    new_token = rotated.seal(SECRET, context=CONTEXT)
    assert rotated.open(new_token, context=CONTEXT) == SECRET
    # New seals use the primary key only: the old key alone cannot open them.
    with pytest.raises(SecretBoxError):
        old_box.open(new_token, context=CONTEXT)
    # Once the old key is dropped, its tokens stop opening.
    with pytest.raises(SecretBoxError, match="unknown key"):
        SecretBox(KEY_B).open(old_token, context=CONTEXT)


def test_rotation_from_text() -> None:
    old_text = base64.b64encode(KEY_A).decode()
    new_text = base64.urlsafe_b64encode(KEY_B).decode().rstrip("=")
    token = SecretBox.from_text(old_text).seal(SECRET, context=CONTEXT)
    rotated = SecretBox.from_text(f"{new_text}, {old_text}")
    assert rotated.open(token, context=CONTEXT) == SECRET
    assert SecretBox(KEY_B).open(rotated.seal("s", context=CONTEXT), context=CONTEXT) == "s"


def test_generate_key_round_trips_through_from_text() -> None:
    keys = {SecretBox.generate_key() for _ in range(10)}
    assert len(keys) == 10
    for text in keys:
        assert len(base64.urlsafe_b64decode(text)) == 32
        box = SecretBox.from_text(text)
        assert box.open(box.seal(SECRET, context=CONTEXT), context=CONTEXT) == SECRET


@pytest.mark.parametrize(
    "encode",
    [
        lambda k: base64.b64encode(k).decode(),
        lambda k: base64.b64encode(k).decode().rstrip("="),
        lambda k: base64.urlsafe_b64encode(k).decode(),
        lambda k: base64.urlsafe_b64encode(k).decode().rstrip("="),
        lambda k: "  " + base64.b64encode(k).decode() + "\n",
    ],
)
def test_key_text_forms(encode: Callable[[bytes], str]) -> None:
    key = b"\xfb\xff" * 16  # encodes to '+' and '/' (or '-' and '_')
    token = SecretBox(key).seal(SECRET, context=CONTEXT)
    assert SecretBox.from_text(encode(key)).open(token, context=CONTEXT) == SECRET


@pytest.mark.parametrize(
    "text",
    [
        "",
        " , ",
        base64.b64encode(bytes(range(16))).decode(),
        base64.b64encode(bytes(range(31))).decode(),
        base64.b64encode(bytes(range(33))).decode(),
        bytes(range(32)).hex(),
        "not base64 at all!",
        "é" * 43,
        base64.b64encode(bytes(32)).decode() + "===",
        "A" * 42,
    ],
)
def test_bad_key_texts(text: str) -> None:
    with pytest.raises(ValueError, match="32 random bytes in base64") as info:
        SecretBox.from_text(text)
    if text.strip(" ,"):
        assert text.strip() not in str(info.value)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_bad_raw_keys(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(bytes(size))
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(KEY_A, bytes(size))


def test_repr_shows_key_ids_not_keys() -> None:
    box = SecretBox(KEY_A, KEY_B)
    text = repr(box)
    assert len(box.key_ids) == 2
    assert box.key_ids[0] in text
    assert KEY_A.hex() not in text
    assert base64.b64encode(KEY_A).decode() not in text
