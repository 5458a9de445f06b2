"""Part 5: efnf against the generic flows a user would otherwise pick (zuko NSF and MAF with
random-group augmentation), side by side on the same data, steps, batch and likelihood formula.

The runs are the quality benchmark's (``bench/quality_points.py``, ``bench/quality_images.py``):
this part calls them and tabulates their rows, so the report and ``python bench/quality.py``
measure the same thing with one copy of the code.
"""

from __future__ import annotations

from bench.quality_images import data_efficiency_rows, image_rows
from bench.quality_points import point_rows
from bench.quality_table import QualityRow
from experiments.report import Section

__all__ = ["run_peers"]

HEADER = ["task", "model", "params", "metric", "value", "group bpd", "wall s"]


def _table_rows(rows: list[QualityRow]) -> list[list[object]]:
    return [
        [
            row.task,
            row.model,
            row.params,
            row.metric_name,
            row.metric,
            dict(row.extra).get("group bpd"),
            row.wall_s,
        ]
        for row in rows
    ]


def _numbers(rows: list[QualityRow]) -> list[dict[str, object]]:
    return [
        {
            "task": row.task,
            "model": row.model,
            "params": row.params,
            row.metric_name: row.metric,
            "wall_s": row.wall_s,
            **dict(row.extra),
        }
        for row in rows
    ]


def run_peers(quick: bool, seed: int = 0) -> tuple[Section, dict]:
    """Runs the benchmark's point, image and data-efficiency rows; returns section and numbers."""
    section = Section("5. Against generic flows: zuko NSF and MAF with group augmentation")
    section.text(
        "Every model of a task trains with the same steps, batch, data and learning-rate "
        "schedule; zuko's flows see each training item moved by a random group element, efnf's "
        "equivariant flows do not. Points: KL(p || q) to the true density in nats. Images: "
        "test bits/dim under one shared uniform dequantization (logit alpha 1e-6 for every "
        "model), and its average over the D4 images of the test set (group bpd). Wall times "
        "are from one run on a shared machine: compare them within a table only."
    )
    points, images = point_rows(quick, seed), image_rows(quick, seed)
    efficiency = data_efficiency_rows(quick, seed)
    section.table(HEADER, _table_rows(points + images))
    section.text(
        "Data efficiency: the same digits test set, with 10 %, 30 % and 100 % of the training "
        "digits, for zuko's best augmented flow and efnf's best equivariant flow."
    )
    section.table(HEADER, _table_rows(efficiency))
    numbers = {
        "points": _numbers(points),
        "images": _numbers(images),
        "data_efficiency": _numbers(efficiency),
    }
    return section, numbers
