"""Each Python example in the README runs on its own, with every name it uses imported.

A block preceded by `<!-- fragment -->` is a deliberate excerpt and is left out.
"""

from __future__ import annotations

import builtins
import re
import symtable
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

_BLOCK = re.compile(r"(<!-- fragment -->\s*)?```python\n(.*?)```", flags=re.DOTALL)


def python_blocks(text: str) -> list[str]:
    """The README's ```python blocks, fragments left out."""
    return [code for fragment, code in _BLOCK.findall(text) if not fragment]


def undefined_names(code: str, defined: set[str]) -> set[str]:
    """Global names `code` reads, in any scope, that neither it nor builtins define."""
    missing: set[str] = set()
    tables = [symtable.symtable(code, "<readme>", "exec")]
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        for symbol in table.get_symbols():
            if not symbol.is_referenced():
                continue
            is_module = table.get_type() == "module"
            if (is_module or symbol.is_global()) and symbol.get_name() not in defined:
                missing.add(symbol.get_name())
    return missing - set(dir(builtins))


BLOCKS = python_blocks(README.read_text())


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 10


def test_fragment_marker_leaves_a_block_out() -> None:
    text = "```python\na = 1\n```\n<!-- fragment -->\n```python\nb\n```\n"
    assert python_blocks(text) == ["a = 1\n"]


def test_undefined_names_sees_function_bodies_and_annotations() -> None:
    code = "import json\n\ndef f(x: Any) -> None:\n    json.dumps(verifier)\n"
    assert undefined_names(code, {"json", "f"}) == {"Any", "verifier"}


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{index + 1}" for index in range(len(BLOCKS))])
def test_readme_block_runs_on_its_own(code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKGATE_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert undefined_names(code, set(namespace)) == set()


def test_readme_verify_example_maps_errors_to_statuses() -> None:
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(BLOCKS[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    handle = namespace["handle"]
    assert callable(handle)
    assert handle(b"{}", {}) == 400
