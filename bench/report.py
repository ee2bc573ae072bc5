"""Printing the figures, and writing ``docs/benchmarks.md`` and ``bench/results.json``."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.load import WRK_INSTALL

if TYPE_CHECKING:
    from bench.suite import Figure, Sizes


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("ms", "MB", "µs"):
        text = f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip()


def verdict(figure: Figure) -> str:
    return "-" if figure.met is None else ("met" if figure.met else "not met")


def line(figure: Figure) -> str:
    ratio = "" if figure.ratio is None else f" → ratio {figure.ratio:.2f}"
    return (
        f"{figure.bench} ({figure.metric}): hookgate {fmt(figure.value, figure.unit)} | "
        f"{figure.baseline_name} {fmt(figure.baseline, figure.unit)}{ratio} | "
        f"target {figure.target}: {verdict(figure)}"
    )


def table(figures: list[Figure]) -> str:
    rows = [
        "| benchmark | measure | hookgate | baseline | ratio | target | |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for f in figures:
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        rows.append(
            f"| {f.bench} | {f.metric} | {fmt(f.value, f.unit)} | "
            f"{f.baseline_name}: {fmt(f.baseline, f.unit)} | {ratio} | {f.target} | {verdict(f)} |"
        )
    return "\n".join(rows)


def runs_table(figures: list[Figure]) -> str:
    rows = ["| benchmark | measure | hookgate runs | baseline runs |", "|---|---|---|---|"]
    for f in figures:
        if len(f.runs) > 12:
            continue  # the RSS samples: the table above gives their peak
        mine = ", ".join(fmt(v, f.unit) for v in f.runs)
        theirs = ", ".join(fmt(v, f.unit) for v in f.baseline_runs)
        rows.append(f"| {f.bench} | {f.metric} | {mine} | {f.baseline_name}: {theirs} |")
    return "\n".join(rows)


def sweep_table(sweep: list[dict[str, float]]) -> str:
    rows = [
        "| offered events/s | achieved | events | p50 ms | p90 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sweep:
        rows.append(
            f"| {s['offered']:,.0f} | {s['achieved']:,.0f} | {s['events']:,.0f} | "
            f"{s['p50']:.1f} | {s['p90']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |"
        )
    return "\n".join(rows)


def calls_table(calls: dict[str, dict[str, float]]) -> str:
    labels = list(calls)
    commands = sorted({c for per in calls.values() for c in per})
    rows = ["| command | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for command in commands:
        cells = [f"{calls[label].get(command, 0):.2f}" for label in labels]
        rows.append(f"| {command} | " + " | ".join(cells) + " |")
    totals = [f"**{sum(calls[label].values()):.1f}**" for label in labels]
    rows.append("| **all** | " + " | ".join(totals) + " |")
    return "\n".join(rows)


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for row in f:
                if row.startswith("model name"):
                    model = row.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError):
        redis_version = "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "redis": redis_version.removeprefix("v="),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write(
    root: Path,
    figures: list[Figure],
    extras: dict[str, Any],
    sizes: Sizes,
    elapsed: float,
    worker_env: dict[str, str],
) -> None:
    from bench import plot

    info = machine()
    sweep = extras.get("sweep", [])
    results = {
        "machine": info,
        "sizes": dataclasses.asdict(sizes),
        "figures": [{**dataclasses.asdict(f), "ratio": f.ratio} for f in figures],
        "sweep": sweep,
        "redis_calls": extras.get("redis_calls", {}),
        "verifier": extras.get("verifier_lines", []),
        "elapsed_s": round(elapsed),
        "worker_env": worker_env,
    }
    (root / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if sweep:
        plot.render(sweep, root / "docs" / "latency.png", info)
    (root / "docs" / "benchmarks.md").write_text(
        render_markdown(figures, extras, sizes, info, elapsed, worker_env)
    )


def render_markdown(
    figures: list[Figure],
    extras: dict[str, Any],
    sizes: Sizes,
    info: dict[str, str],
    elapsed: float,
    worker_env: dict[str, str],
) -> str:
    verifier = extras.get("verifier_lines", [])
    sweep = extras.get("sweep", [])
    parts = [
        "# Benchmarks",
        "",
        "Every figure is measured next to a bare baseline in the same run on the same machine, "
        "and the ratio is the figure to read: the machines these run on are shared and noisy, "
        "so absolute numbers alone say little. Throughput figures are medians over "
        f"{sizes.ingest_runs} runs, interleaved with their baselines.",
        "",
        "## Results",
        "",
        table(figures),
        "",
    ]
    if extras.get("wrk_missing"):
        parts += ["Single-event ingest was skipped: wrk is not installed.", ""]
    parts += [
        "Ratios are hookgate ÷ baseline. For latency the baseline is a direct POST from the load "
        "generator to the same receiver at the same rate (the floor of one loopback hop); "
        "for memory it is an idle worker and the size of the event body.",
        "",
        "### Every run",
        "",
        runs_table(figures),
        "",
    ]
    notes = [f"- {f.bench}, {f.metric}: {f.note}" for f in figures if f.note]
    if notes:
        parts += ["### Notes", "", *notes, ""]
    if sweep:
        parts += [
            "### Latency vs offered load",
            "",
            "Time from the `202 Accepted` reaching the client to the receiver getting the first "
            "attempt, one event per request, open-loop load, one gateway and one worker. The "
            f"{sizes.latency_rate:g} events/s row is the median of its runs.",
            "",
            sweep_table(sweep),
            "",
            "![latency percentiles vs offered load](latency.png)",
            "",
        ]
    calls = extras.get("redis_calls", {})
    if calls:
        parts += [
            "### Redis commands per unit of work",
            "",
            "From `INFO commandstats` around the first run (commands inside hookgate's Lua "
            "scripts count too, so `evalsha` is one round trip and the rest of its row is "
            "what the script ran; arq's own commands are sent one round trip at a time or in "
            "small MULTI pipelines).",
            "",
            calls_table(calls),
            "",
        ]
    parts += ["### Verifier", ""]
    if verifier:
        parts += [
            "Output of `bench/bench_verifier.py`, run by the suite (method and discussion: "
            "[benchmarks-verifier.md](benchmarks-verifier.md)):",
            "",
            "```",
        ]
        parts += [*verifier, "```", ""]
    else:
        parts += ["`bench/bench_verifier.py` was not present in this run.", ""]
    parts += [
        "## What is measured",
        "",
        "- **Baselines** (`bench/baselines.py`, after `limit.py`): `parse_only` is a bare aiohttp "
        "handler that parses the 1 KB event and answers 202; `naive_durable` adds one Redis "
        "MULTI (HSET + LPUSH) per request; `naive_batch` parses a 100-event batch and writes it "
        "in one MULTI; `deliver` is a bare aiohttp client POSTing HMAC-signed 1 KB bodies to the "
        "same receiver hookgate delivers to, 100 in flight.",
        "- **Processes**: one Redis (AOF, `appendfsync everysec`, as shipped), one "
        "`hookgate serve`, one `hookgate worker` with "
        + (
            ", ".join(f"`{k}={v}`" for k, v in worker_env.items())
            or "the default settings (concurrency 100, poll delay 10 ms)"
        )
        + ", a receiver process answering 204; all on 127.0.0.1. The endpoint has "
        "`max_in_flight` 100. Automatic AOF rewrites are moved between measurements.",
        f"- **Single-event ingest**: `wrk -t1 -c64 -d{sizes.wrk_seconds:g}s`, 1 KB "
        "`payment.succeeded` events, one endpoint matched (so each event stores one delivery and "
        "enqueues one job); no worker runs. The suite checks the stored count is at least wrk's. "
        "It runs with the admin token and again with an API key of scope `events:write` (its "
        "record cached by the gateway for at most 0.5 s), interleaved.",
        f"- **Batch ingest**: {sizes.batches} POSTs of 100 events, 8 connections.",
        "- **Cells**: a second redis-server (AOF, `appendfsync everysec`, like the first) and two "
        "more `hookgate serve` processes, one over one cell (`HOOKGATE_REDIS_URL`), one over two "
        "(`HOOKGATE_CELLS=c1=…,c2=…`, the first cell on the suite's Redis); 20 businesses with an "
        "endpoint each (so each is pinned in the directory), 10 of them hashing to each cell; no "
        f"worker runs. Batch ingest: {sizes.batches} POSTs of 100 events, the businesses taking "
        f"turns (half of each batch per cell), 8 connections, {sizes.batch_runs} runs per "
        "gateway, alternating; the suite checks each cell stored its share. Routing cost: "
        f"`wrk -t1 -c64 -d{sizes.wrk_seconds:g}s` single 1 KB events of one business of the "
        f"first cell, {sizes.cell_runs} runs per gateway, alternating: the same Redis does the "
        "same work for both gateways, so the ratio is what routing costs (placement lookup, "
        "grouping by cell). One gateway process and both redis-servers share the 2 cores here: "
        "a second cell adds Redis capacity but no CPU, so little gain is expected on this "
        "machine (see [scaling.md](scaling.md)).",
        f"- **Delivery throughput**: {sizes.deliveries:,} deliveries queued through the batch API "
        "with the worker stopped, then one worker started; the rate is counted from the first "
        "to the last arrival at the receiver, for hookgate and the baseline alike.",
        f"- **Ordering**: {sizes.ordering_keys:,} ordering keys x {sizes.ordering_per_key} "
        "events, keys interleaved, queued through the batch API with the worker stopped, then "
        "delivered by one worker through an `ordered` endpoint; the baseline is the same "
        "events (keys included) through an unordered endpoint, interleaved run by run. One hot "
        f"key of {sizes.hot_key_events:,} events goes one delivery at a time: its baseline is "
        "the `deliver` client sending to the same receiver with one request in flight, the "
        "ceiling of any ordered delivery of one key. The receiver checks every delivery's "
        "`webhook-sequence` per `webhook-ordering-key` and the run fails if one arrives before "
        "its predecessor. Redis bytes per pending event: `used_memory` delta over "
        f"{sizes.ordering_pending:,} queued events over {sizes.ordering_keys:,} keys, ordered "
        "(one job per key, the others waiting) against unordered.",
        f"- **Latency**: {sizes.latency_rate:g} events/s for {sizes.latency_seconds:g} s, "
        f"{sizes.latency_runs} runs; the sweep runs {sizes.sweep_seconds:g} s per load.",
        f"- **Memory**: Redis `used_memory` delta over {sizes.pending:,} stored events (each "
        "with its delivery hash, arq job, queue and due-index entries, pending set entry); and "
        "the same per event after delivery (job gone, attempt log kept for the retention period). "
        "Worker RSS is sampled every 0.25 s while "
        f"{sizes.pending:,} deliveries are due and a receiver that holds each request "
        f"{sizes.slow_receiver_delay:g} s keeps 100 in flight: the backlog stays in Redis and "
        "arq reads at most `max_jobs` job ids per poll, so this is the worker's honest footprint "
        "with that much pending, not a claim that it holds 100k jobs in memory.",
        "",
        "- **Event loops**: `hookgate serve` and `hookgate worker` run on uvloop; the baselines "
        "run on the standard asyncio loop, as `limit.py` does.",
        "",
        "Where the time goes and what would close the remaining gaps: "
        "[performance.md](performance.md).",
        "",
        "## Machine",
        "",
        f"- `nproc`: {info['nproc']}",
        f"- CPU: {info['cpu']}",
        f"- Python {info['python']}, Redis {info['redis']}, {info['os']}",
        f"- Date: {info['date']}; the full suite took {elapsed / 60:.1f} minutes",
        "",
        "## Reproduce",
        "",
        "```",
        "make bench            # = .venv/bin/python -m bench; rewrites this file and latency.png",
        "python -m bench --quick              # every benchmark at a tiny size, writes nothing",
        "python -m bench --only latency --no-write",
        "python -m bench --profile /tmp/prof  # py-spy the gateway and the worker under load",
        "python -m bench.plot                 # redraw latency.png from bench/results.json",
        "```",
        "",
        "The plot needs matplotlib (`pip install -e '.[bench]'`). Single-event ingest needs wrk: "
        + WRK_INSTALL.split(". ", 1)[1],
        "",
    ]
    return "\n".join(parts)
