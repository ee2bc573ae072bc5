"""Prometheus text for the counters every hookgate process keeps in Redis."""

from __future__ import annotations

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def latency_bucket(seconds: float) -> str:
    """The smallest histogram bucket bound that holds ``seconds`` (``+Inf`` past the last)."""
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


def render_metrics(counters: dict[str, str], *, queued: int, pending: int, waiting: int) -> str:
    """The exposition text: cluster-wide figures, whichever gateway process is scraped."""

    def count(name: str) -> int:
        return int(float(counters.get(name, "0")))

    lines = [
        "# HELP hookgate_events_ingested_total Events accepted (202) by the gateway.",
        "# TYPE hookgate_events_ingested_total counter",
        f"hookgate_events_ingested_total {count('events_ingested')}",
        "# HELP hookgate_deliveries_total Deliveries that reached a final state, by outcome.",
        "# TYPE hookgate_deliveries_total counter",
    ]
    for outcome in ("succeeded", "failed", "cancelled", "skipped"):
        lines.append(
            f'hookgate_deliveries_total{{outcome="{outcome}"}} {count("deliveries_" + outcome)}'
        )
    lines += [
        "# HELP hookgate_attempts_total Delivery attempts made, by result.",
        "# TYPE hookgate_attempts_total counter",
        f'hookgate_attempts_total{{result="success"}} {count("attempts_success")}',
        f'hookgate_attempts_total{{result="failure"}} {count("attempts_failure")}',
        "# HELP hookgate_attempt_latency_seconds Time from sending an attempt to its answer.",
        "# TYPE hookgate_attempt_latency_seconds histogram",
    ]
    cumulative = 0
    for bound in LATENCY_BUCKETS:
        cumulative += count(f"latency_bucket:{bound!r}")
        lines.append(f'hookgate_attempt_latency_seconds_bucket{{le="{bound!r}"}} {cumulative}')
    cumulative += count("latency_bucket:+Inf")
    lines += [
        f'hookgate_attempt_latency_seconds_bucket{{le="+Inf"}} {cumulative}',
        f"hookgate_attempt_latency_seconds_sum {float(counters.get('latency_sum', '0')):.6f}",
        f"hookgate_attempt_latency_seconds_count {cumulative}",
        "# HELP hookgate_queue_depth Attempt jobs waiting on the queue (due or deferred).",
        "# TYPE hookgate_queue_depth gauge",
        f"hookgate_queue_depth {queued}",
        "# HELP hookgate_deliveries_pending Deliveries not yet in a final state.",
        "# TYPE hookgate_deliveries_pending gauge",
        f"hookgate_deliveries_pending {pending}",
        "# HELP hookgate_deliveries_waiting Pending deliveries waiting behind their ordering "
        "key's head (no attempt scheduled).",
        "# TYPE hookgate_deliveries_waiting gauge",
        f"hookgate_deliveries_waiting {waiting}",
        "# HELP hookgate_ordering_keys_blocked_total Ordering keys blocked behind a head whose "
        "retries were spent (replay or skip the head to resume the key).",
        "# TYPE hookgate_ordering_keys_blocked_total counter",
        f"hookgate_ordering_keys_blocked_total {count('ordering_keys_blocked')}",
    ]
    return "\n".join(lines) + "\n"
