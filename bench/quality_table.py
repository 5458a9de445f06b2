"""One row type and one table printer for the quality benchmark (`bench/quality.py`).

Each task module (points, images) returns :class:`QualityRow` values measured side by side in one
run; the driver prints them with :func:`format_table`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class QualityRow:
    """One model trained on one task with the task's shared steps, batch and data.

    ``metric`` is lower-is-better (KL in nats, or test bits/dim); ``extra`` holds further figures
    (e.g. the average group bpd) by name.
    """

    task: str
    model: str
    params: int
    metric_name: str
    metric: float
    wall_s: float
    extra: tuple[tuple[str, float], ...] = ()


def _figure(value: float) -> str:
    """Counts (steps, items) as integers, measurements to four decimals."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.4f}"


def format_table(rows: Iterable[QualityRow]) -> str:
    """A fixed-width text table, one line per row, in the order given."""
    rows = list(rows)
    extra_names = sorted({name for row in rows for name, _ in row.extra})
    header = ["task", "model", "params", "metric", "value", "wall s", *extra_names]
    lines = [header]
    for row in rows:
        extras = dict(row.extra)
        lines.append(
            [
                row.task,
                row.model,
                f"{row.params:,}",
                row.metric_name,
                f"{row.metric:.4f}",
                f"{row.wall_s:.1f}",
                *(_figure(extras[name]) if name in extras else "" for name in extra_names),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
