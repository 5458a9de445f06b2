"""``bench/quality_images.py --quick`` runs every image model and prints both tables."""

from __future__ import annotations

import math

import pytest

from bench.quality_images import EFFICIENCY_MODELS, MODELS, data_efficiency_rows, image_rows

pytestmark = pytest.mark.slow


def test_quick_image_rows_cover_every_model_and_only_efnf_is_invariant() -> None:
    rows = image_rows(quick=True, seed=0)
    digits = [row for row in rows if row.task.startswith("D4 digits")]
    assert {row.model for row in digits} == set(MODELS)
    assert any(row.task.startswith("D4 RGB patches") for row in rows)
    for row in rows:
        group_bpd = dict(row.extra)["group bpd"]
        assert math.isfinite(row.metric) and 0 < row.metric < 40 and row.params > 0
        if row.model.startswith("efnf"):
            # An exactly invariant model scores every rotated test image like the original.
            assert abs(group_bpd - row.metric) < 1e-4, row
        else:
            assert abs(group_bpd - row.metric) > 1e-4, row


def test_quick_data_efficiency_rows_use_the_three_fractions() -> None:
    rows = data_efficiency_rows(quick=True, seed=0)
    tasks = {row.task.split(" (")[0] for row in rows}
    assert tasks == {"D4 digits 10%", "D4 digits 30%", "D4 digits"}
    assert {row.model for row in rows} == set(EFFICIENCY_MODELS)
