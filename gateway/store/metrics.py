"""Prometheus text for the counters every hookgate process keeps in Redis, one set per cell."""

from __future__ import annotations

import dataclasses

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def latency_bucket(seconds: float) -> str:
    """The smallest histogram bucket bound that holds ``seconds`` (``+Inf`` past the last)."""
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


@dataclasses.dataclass(frozen=True)
class CellFigures:
    """One cell's counters and gauges, as read from its Redis (``up`` False: unreachable)."""

    cell: str
    up: bool
    counters: dict[str, str] = dataclasses.field(default_factory=dict)
    queued: int = 0
    pending: int = 0
    waiting: int = 0

    def count(self, name: str) -> int:
        return int(float(self.counters.get(name, "0")))


_FAMILIES = (
    ("hookgate_cell_up", "gauge", "1 while the cell's Redis answered this scrape, else 0."),
    ("hookgate_events_ingested_total", "counter", "Events accepted (202) by the gateway."),
    (
        "hookgate_deliveries_total",
        "counter",
        "Deliveries that reached a final state, by outcome.",
    ),
    ("hookgate_attempts_total", "counter", "Delivery attempts made, by result."),
    (
        "hookgate_attempt_latency_seconds",
        "histogram",
        "Time from sending an attempt to its answer.",
    ),
    ("hookgate_queue_depth", "gauge", "Attempt jobs waiting on the queue (due or deferred)."),
    ("hookgate_deliveries_pending", "gauge", "Deliveries not yet in a final state."),
    (
        "hookgate_deliveries_waiting",
        "gauge",
        "Pending deliveries waiting behind their ordering key's head (no attempt scheduled).",
    ),
    (
        "hookgate_ordering_keys_blocked_total",
        "counter",
        "Ordering keys blocked behind a head whose retries were spent (replay or skip the head "
        "to resume the key).",
    ),
)


def _samples(f: CellFigures) -> dict[str, list[str]]:
    """Each family's sample lines for one cell (every sample labelled with the cell)."""
    cell = f'cell="{f.cell}"'
    out: dict[str, list[str]] = {name: [] for name, _, _ in _FAMILIES}
    out["hookgate_cell_up"].append(f"hookgate_cell_up{{{cell}}} {1 if f.up else 0}")
    if not f.up:
        return out
    out["hookgate_events_ingested_total"].append(
        f"hookgate_events_ingested_total{{{cell}}} {f.count('events_ingested')}"
    )
    for outcome in ("succeeded", "failed", "cancelled", "skipped"):
        out["hookgate_deliveries_total"].append(
            f'hookgate_deliveries_total{{{cell},outcome="{outcome}"}} '
            f"{f.count('deliveries_' + outcome)}"
        )
    for result in ("success", "failure"):
        out["hookgate_attempts_total"].append(
            f'hookgate_attempts_total{{{cell},result="{result}"}} {f.count("attempts_" + result)}'
        )
    latency = out["hookgate_attempt_latency_seconds"]
    cumulative = 0
    for bound in LATENCY_BUCKETS:
        cumulative += f.count(f"latency_bucket:{bound!r}")
        latency.append(
            f'hookgate_attempt_latency_seconds_bucket{{{cell},le="{bound!r}"}} {cumulative}'
        )
    cumulative += f.count("latency_bucket:+Inf")
    latency += [
        f'hookgate_attempt_latency_seconds_bucket{{{cell},le="+Inf"}} {cumulative}',
        f"hookgate_attempt_latency_seconds_sum{{{cell}}} "
        f"{float(f.counters.get('latency_sum', '0')):.6f}",
        f"hookgate_attempt_latency_seconds_count{{{cell}}} {cumulative}",
    ]
    out["hookgate_queue_depth"].append(f"hookgate_queue_depth{{{cell}}} {f.queued}")
    out["hookgate_deliveries_pending"].append(f"hookgate_deliveries_pending{{{cell}}} {f.pending}")
    out["hookgate_deliveries_waiting"].append(f"hookgate_deliveries_waiting{{{cell}}} {f.waiting}")
    out["hookgate_ordering_keys_blocked_total"].append(
        f"hookgate_ordering_keys_blocked_total{{{cell}}} {f.count('ordering_keys_blocked')}"
    )
    return out


def render_metrics(cells: list[CellFigures]) -> str:
    """The exposition text: every cell's figures, whichever gateway process is scraped, each
    sample labelled with its ``cell``. A cell that did not answer has ``hookgate_cell_up 0``
    and no other sample (absent, not zero: its counters are unknown, not reset)."""
    per_cell = [_samples(f) for f in cells]
    lines: list[str] = []
    for name, kind, text in _FAMILIES:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for samples in per_cell:
            lines += samples[name]
    return "\n".join(lines) + "\n"
