"""A picture of a run: one row per instance, its running span, its jobs, and the idle tail.

Plain SVG written by hand (no plotting library to install for one chart). Input is plain data,
so the picture is tested like any function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from fleet_demo.summary import JobOutcome

ROW_HEIGHT = 34
LABEL_WIDTH = 230
CHART_WIDTH = 760
COLOURS = {
    "booting": "#c7d7ee",  # pending
    "running": "#7fa7d9",
    "stopping": "#f2c48d",
    "job": "#3c9d5d",
    "job_failed": "#d9534f",
    "idle": "#f0a030",  # running with no job left: what the old scripts wasted
}


@dataclass(frozen=True)
class Row:
    label: str
    spans: tuple[tuple[str, float, float], ...]  # (kind, start, end): kind is a COLOURS key
    jobs: tuple[JobOutcome, ...] = ()  # each with its start and end


def rows_from(
    instances: Mapping[str, str],
    state_events: Sequence[Mapping[str, Any]],
    jobs: Mapping[str, Sequence[JobOutcome]],
    until: float,
) -> list[Row]:
    """Rows for ``{instance_id: label}`` from the simulator's ``state`` events and each one's jobs.

    A running span after the instance's last job ended is drawn as idle; jobs not ended are left out.
    """
    rows = []
    for instance_id, label in instances.items():
        events = [e for e in state_events if e["instance_id"] == instance_id]
        spans: list[tuple[str, float, float]] = []
        for event, following in zip(events, [*events[1:], None], strict=True):
            end = following["t"] if following else until
            kind = {"pending": "booting", "running": "running", "stopping": "stopping"}.get(event["to"])
            if kind and end > event["t"]:
                spans.append((kind, event["t"], end))
        own_jobs = tuple(
            job for job in jobs.get(instance_id, ()) if job.started is not None and job.ended is not None
        )
        last_end = max((job.ended for job in own_jobs), default=None)
        if last_end is not None:
            spans = _split_idle(spans, last_end)
        rows.append(Row(f"{label}  {instance_id}", tuple(spans), own_jobs))
    return rows


def _split_idle(spans: list[tuple[str, float, float]], last_end: float) -> list[tuple[str, float, float]]:
    out = []
    for kind, start, end in spans:
        if kind == "running" and start < last_end < end:
            out += [(kind, start, last_end), ("idle", last_end, end)]
        elif kind == "running" and start >= last_end:
            out.append(("idle", start, end))
        else:
            out.append((kind, start, end))
    return out


def render(rows: Sequence[Row], title: str) -> str:
    """The SVG document (time runs left to right, from the first event to the last)."""
    times = [t for row in rows for _, a, b in row.spans for t in (a, b)]
    times += [t for row in rows for job in row.jobs for t in (job.started, job.ended)]
    t0, t1 = (min(times), max(times)) if times else (0.0, 1.0)
    scale = CHART_WIDTH / max(t1 - t0, 1e-6)
    height = 60 + ROW_HEIGHT * len(rows) + 40
    width = LABEL_WIDTH + CHART_WIDTH + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]

    def bar(start: float, end: float, y: float, height: float, fill: str, name: str) -> str:
        return (
            f'<rect x="{LABEL_WIDTH + (start - t0) * scale:.1f}" y="{y:.1f}" '
            f'width="{max((end - start) * scale, 1):.1f}" height="{max(height, 1):.1f}" fill="{fill}">'
            f"<title>{escape(name)} {end - start:.1f} s</title></rect>"
        )

    for i, row in enumerate(rows):
        y = 40 + i * ROW_HEIGHT
        out.append(f'<text x="10" y="{y + 18}">{escape(row.label)}</text>')
        out += [bar(start, end, y + 4, ROW_HEIGHT - 8, COLOURS[kind], kind) for kind, start, end in row.spans]
        lane_height = (ROW_HEIGHT - 14) / max(len(row.jobs), 1)
        for lane, job in enumerate(row.jobs):
            colour = COLOURS["job" if job.status == "succeeded" else "job_failed"]
            out.append(
                bar(job.started, job.ended, y + 7 + lane * lane_height, lane_height - 1, colour, job.name)
            )
    axis_y = 40 + len(rows) * ROW_HEIGHT + 12
    out.append(f'<text x="{LABEL_WIDTH}" y="{axis_y}">0 s</text>')
    out.append(f'<text x="{LABEL_WIDTH + CHART_WIDTH - 40}" y="{axis_y}">{t1 - t0:.0f} s</text>')
    legend_x = LABEL_WIDTH + 60
    for kind, colour in COLOURS.items():
        out.append(f'<rect x="{legend_x}" y="{axis_y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 16}" y="{axis_y}">{kind.replace("_", " ")}</text>')
        legend_x += 95
    out.append("</svg>")
    return "\n".join(out) + "\n"
