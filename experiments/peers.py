"""Part 5: efnf against the generic flows a user would otherwise pick (zuko NSF and MAF with
random-group augmentation), side by side on the same data, steps, batch and likelihood formula.

The runs are the quality benchmark's (``bench/quality_points.py``, ``bench/quality_images.py``):
this part calls them and tabulates their rows, so the report and ``python bench/quality.py``
measure the same thing with one copy of the code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.quality_images import data_efficiency_rows, image_rows
from bench.quality_points import point_rows
from bench.quality_table import QualityRow
from experiments.report import Section

__all__ = ["PeersResult", "render_peers", "run_peers"]

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


@dataclass(frozen=True)
class PeersResult:
    """The benchmark's rows: points, images, and the digits at three training-set sizes."""

    points: list[QualityRow]
    images: list[QualityRow]
    data_efficiency: list[QualityRow]

    def numbers(self) -> dict[str, Any]:
        """Part 5's entry in ``results.json``."""
        return {
            "points": _numbers(self.points),
            "images": _numbers(self.images),
            "data_efficiency": _numbers(self.data_efficiency),
        }


def run_peers(quick: bool, seed: int = 0) -> PeersResult:
    """Runs the benchmark's point, image and data-efficiency rows (they evaluate as they go)."""
    points, images = point_rows(quick, seed), image_rows(quick, seed)
    return PeersResult(points, images, data_efficiency_rows(quick, seed))


def render_peers(result: PeersResult) -> Section:
    """Part 5's section of the report: two tables, no figure."""
    section = Section("5. Against generic flows: zuko NSF and MAF with group augmentation")
    section.text(
        "Every model of a task trains with the same steps, batch, data and learning-rate "
        "schedule; zuko's flows see each training item moved by a random group element, efnf's "
        "equivariant flows do not. Points: KL(p || q) to the true density in nats. Images: "
        "test bits/dim under one shared uniform dequantization (logit alpha 1e-6 for every "
        "model), and its average over the D4 images of the test set (group bpd). Wall times "
        "are from one run on a shared machine: compare them within a table only."
    )
    section.table(HEADER, _table_rows(result.points + result.images))
    section.text(
        "Data efficiency: the same digits test set, with 10 %, 30 % and 100 % of the training "
        "digits, for zuko's best augmented flow and efnf's best equivariant flow."
    )
    section.table(HEADER, _table_rows(result.data_efficiency))
    return section
