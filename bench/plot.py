"""``docs/latency.png``: latency percentiles vs offered load, from the suite's sweep.

``python -m bench.plot`` redraws it from ``bench/results.json``; needs matplotlib.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def render(sweep: list[dict[str, float]], out: Path, machine: dict[str, str] | None) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'); no plot drawn")
        return
    rates = [s["offered"] for s in sweep]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for key, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^-"), ("max", "x:")):
        ax.plot(rates, [s[key] for s in sweep], style, label=key)
    ax.axhline(30, color="tab:blue", linewidth=0.8, alpha=0.5)
    ax.axhline(150, color="tab:green", linewidth=0.8, alpha=0.5)
    ax.text(rates[0], 30, " p50 target", va="bottom", fontsize=8, color="tab:blue")
    ax.text(rates[0], 150, " p99 target", va="bottom", fontsize=8, color="tab:green")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (events/s, one per request)")
    ax.set_ylabel("202 → first attempt at receiver (ms)")
    title = "hookgate latency vs offered load (1 gateway, 1 worker)"
    if machine:
        title += f"\n{machine['nproc']} cores, {machine['cpu']}, {machine['date']}"
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> int:
    results: dict[str, Any] = json.loads((ROOT / "bench" / "results.json").read_text())
    if not results.get("sweep"):
        print("bench/results.json has no latency sweep")
        return 1
    render(results["sweep"], ROOT / "docs" / "latency.png", results.get("machine"))
    print("wrote docs/latency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
