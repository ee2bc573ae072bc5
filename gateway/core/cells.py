"""Cells: businesses spread over several Redis groups (``HOOKGATE_CELLS``), and where a business
or an id lives. Pure: no I/O (the directory of pinned businesses is read by ``store/cells.py``).

A cell is one Redis group (one Redis, or a primary behind Sentinel) with the workers that serve
it; inside a cell, keys and scripts are as they are with one Redis. Every business lives in one
cell: the one the directory pins it to, else the cell rendezvous hashing of its id picks (adding
a cell changes the pick only for the businesses that hash to the new cell). Every id hookgate
issues in a cell other than ``default`` ends in ``.{cell}``, so an id routes without a lookup.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from gateway.core import formats
from gateway.core.redisurl import RedisTarget, parse_redis_url

DEFAULT_CELL = "default"
CELL_NAME = re.compile(formats.CELL_NAME)
CELL_NAME_WORDS = "1-31 of a-z 0-9 -, starting with a letter"
# where a list of cells splits: a comma before the next "name=" (a Sentinel URL has commas too)
_NEXT_CELL = re.compile(r",(?=[a-z][a-z0-9-]*=)")


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """One cell as configured: its name and its Redis group."""

    name: str
    url: str = dataclasses.field(repr=False)  # may hold a password

    @property
    def target(self) -> RedisTarget:
        return parse_redis_url(self.url)


def parse_cells(text: str) -> tuple[CellSpec, ...]:
    """``c1=redis+sentinel://h1:26379,h2:26379/m1,c2=redis://h3:6379/0`` → the cells, in order
    (the first holds the directory). Raises ``ValueError`` naming what is wrong, never echoing
    a URL (it may hold a password)."""
    if not text.strip():
        raise ValueError("no cell is listed")
    cells: list[CellSpec] = []
    for n, entry in enumerate(_NEXT_CELL.split(text.strip()), 1):
        name, sep, url = entry.strip().partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"entry {n} is not name=url")
        if not CELL_NAME.match(name):
            shown = name if len(name) <= 40 and name.isprintable() else name[:40] + "…"
            raise ValueError(f"cell name {shown!r} must be {CELL_NAME_WORDS}")
        if any(c.name == name for c in cells):
            raise ValueError(f"cell {name!r} is listed twice")
        try:
            target = parse_redis_url(url.strip())
        except ValueError as exc:
            raise ValueError(f"cell {name!r}: {exc}") from None
        if not target.is_sentinel and "," in url:
            raise ValueError(
                f"cell {name!r}: its URL holds a comma (each cell is name=url, and only a "
                "redis+sentinel:// URL lists several hosts)"
            )
        cells.append(CellSpec(name, url.strip()))
    return tuple(cells)


def rendezvous(business_id: str, cells: tuple[str, ...]) -> str:
    """The cell rendezvous (highest random weight) hashing places ``business_id`` in: the cell
    whose hash with the business is highest. Adding a cell moves only the businesses whose
    highest hash is the new cell's; removing one moves only that cell's businesses."""
    if len(cells) == 1:
        return cells[0]
    best, best_score = cells[0], b""
    for cell in cells:
        score = hashlib.blake2b(f"{cell}\x00{business_id}".encode(), digest_size=8).digest()
        if score > best_score:
            best, best_score = cell, score
    return best


def id_suffix(cell: str) -> str:
    """What ids made in ``cell`` end with: nothing in ``default`` (so a deployment that grows
    from one Redis to cells keeps its ids), ``.{cell}`` elsewhere."""
    return "" if cell == DEFAULT_CELL else "." + cell


def cell_of_id(value: str) -> str:
    """The cell an id hookgate made lives in: the part after its last ``.``, or ``default``."""
    stem, dot, cell = value.rpartition(".")
    return cell if dot and stem else DEFAULT_CELL
