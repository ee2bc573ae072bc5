"""The benchmark suite at a tiny size, only to keep it working.

Its figures are not checked here: performance is measured by ``make bench`` against
baselines run beside it, never asserted in tests (the machine is shared and noisy).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_runs_at_a_tiny_size_and_writes_nothing() -> None:
    written = [ROOT / "docs" / "benchmarks.md", ROOT / "bench" / "results.json"]
    before = [path.read_bytes() for path in written]
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "broken: none" in result.stdout, output[-4000:]
    names = ("ingest", "batch", "delivery", "ordering", "latency", "memory", "verifier")
    for name in (*names, "replicated"):
        assert f"== {name}" in result.stdout
    # each benchmark printed its figure beside its baseline and the ratio
    assert result.stdout.count("→ ratio") >= 8, result.stdout[-4000:]
    assert [path.read_bytes() for path in written] == before
