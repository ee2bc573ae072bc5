"""Server-rendered SVG charts: no script, no external asset, colours from portal.css."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH = 720
HEIGHT = 200
LEFT = 40  # room for the y-axis labels
BOTTOM = 24  # room for the hour labels
TOP = 10


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, … at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def hourly_chart(hourly: Sequence[Mapping[str, Any]]) -> Markup:
    """Stacked bars of attempts per hour (succeeded below, failed above) from an endpoint's
    ``health.hourly`` (oldest first, each ``{"hour", "ok", "failed"}``)."""
    top = nice_ceiling(max((int(h["ok"]) + int(h["failed"]) for h in hourly), default=0))
    plot_w = WIDTH - LEFT - 4
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(hourly), 1)
    bar = max(slot * 0.72, 1.0)
    total_ok = sum(int(h["ok"]) for h in hourly)
    total_failed = sum(int(h["failed"]) for h in hourly)
    label = (
        f"Delivery attempts per hour over the last {len(hourly)} hours: "
        f"{total_ok} succeeded, {total_failed} failed"
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        value = top * fraction
        text = f"{value:g}"
        parts.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 4}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        )
    for i, h in enumerate(hourly):
        ok, failed = int(h["ok"]), int(h["failed"])
        x = LEFT + i * slot + (slot - bar) / 2
        ok_h = plot_h * ok / top
        failed_h = plot_h * failed / top
        hour = str(h["hour"])[11:16]
        tip = escape(f"{hour} UTC: {ok} succeeded, {failed} failed")
        parts.append(f"<g><title>{tip}</title>")
        if ok:
            y = TOP + plot_h - ok_h
            parts.append(
                f'<rect class="ok" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{ok_h:.1f}"/>'
            )
        if failed:
            y = TOP + plot_h - ok_h - failed_h
            parts.append(
                f'<rect class="failed" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{failed_h:.1f}"/>'
            )
        if not ok and not failed:
            parts.append(
                f'<rect class="empty" x="{x:.1f}" y="{TOP + plot_h - 1:.1f}" '
                f'width="{bar:.1f}" height="1"/>'
            )
        parts.append("</g>")
        if i % 6 == 0 or i == len(hourly) - 1:
            parts.append(
                f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="middle">{escape(hour)}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))
