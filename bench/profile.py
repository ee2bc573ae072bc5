"""Summarise a py-spy ``raw`` (collapsed stacks) profile written by ``python -m bench --profile``.

``python -m bench.profile DIR/gateway-ingest.txt [--top 30]`` prints the share of on-CPU
samples by the package the time is spent in (self time) and by function (inclusive time).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def package(path: str) -> str:
    """The top-level package of a frame's file (py-spy shortens library paths to
    ``redis/asyncio/client.py``); hookgate's own modules as ``gateway:store``."""
    for own in ("gateway/", "worker/", "bench/"):
        if f"/{own}" in path or path.startswith(own):
            return own.rstrip("/") + ":" + Path(path).stem
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    match = re.search(r"/python3\.\d+/(.+)$", path)
    if match:
        path = match.group(1)
    if path.startswith("/") or path.startswith("<"):
        return path
    return path.split("/", 1)[0].removesuffix(".py")


# What the time is spent on, by the package of the outermost library frame below the
# innermost frame of hookgate's own code (or of the whole stack when none is hookgate's).
KINDS = {
    "redis": "redis-py + its socket I/O",
    "aiohttp": "aiohttp + its socket I/O",
    "yarl": "aiohttp + its socket I/O",
    "multidict": "aiohttp + its socket I/O",
    "structlog": "logging (structlog)",
    "logging": "logging (structlog)",
    "json": "json",
    "cryptography": "crypto (HMAC, AES-GCM)",
    "standardwebhooks": "crypto (HMAC, AES-GCM)",
    "hmac": "crypto (HMAC, AES-GCM)",
    "hashlib": "crypto (HMAC, AES-GCM)",
    "base64": "crypto (HMAC, AES-GCM)",
}


ENTRY_POINTS = ("gateway:cli", "worker:main")


def kind_of(packages: list[str]) -> str:
    own = [
        i
        for i, p in enumerate(packages)
        if p.startswith(("gateway:", "worker:")) and p not in ENTRY_POINTS
    ]
    below = packages[own[-1] + 1 :] if own else packages
    for pkg in below:
        if pkg in KINDS:
            return KINDS[pkg]
    if own:
        return "hookgate's own Python"
    leaf = packages[-1] if packages else ""
    return "event loop" if leaf in ("asyncio", "selectors") else f"other ({leaf})"


def caller_of(packages: list[str]) -> str:
    if any(p.startswith("gateway:ingest") or p == "worker:delivery" for p in packages):
        return "hookgate"
    if "arq" in packages:
        return "arq"
    if any(p.startswith("gateway:") and p not in ENTRY_POINTS for p in packages):
        return "hookgate"
    return "loop/other"


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for raw in stack.split(";"):
            m = FRAME.match(raw)
            frames.append((m.group("func"), m.group("file")) if m else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def summarise(path: Path, top: int) -> str:
    stacks = parse(path.read_text())
    total = sum(n for _, n in stacks) or 1
    kinds: Counter[tuple[str, str]] = Counter()
    self_by_pkg: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        if frames:
            self_by_pkg[package(frames[-1][1])] += n
        packages = [package(file) for _, file in frames]
        kinds[(caller_of(packages), kind_of(packages))] += n
        seen = set()
        for func, file in frames:
            key = f"{func} ({package(file)})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    out = [f"{path.name}: {total} on-CPU samples", "", "self time by package:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in self_by_pkg.most_common(top)]
    out += ["", "by caller and kind of work:"]
    out += [f"  {n / total:6.1%}  {c:<14} {k}" for (c, k), n in kinds.most_common(top)]
    out += ["", "inclusive time by function:"]
    out += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    for file in args.files:
        print(summarise(file, args.top))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
