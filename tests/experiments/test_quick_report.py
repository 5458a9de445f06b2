"""The experiment runner's smoke test: ``--quick`` writes a report, figures and finite numbers.

The numbers are not judged (a few steps of training say nothing about the method); this checks
that every part runs end to end through flows, that the files are where the report says, and
that nothing is NaN.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from experiments.__main__ import main

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _numbers(value: object) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, str):
        # _json_safe writes NaN and infinities as strings: they must show up as failures here.
        return [float(value)] if value.lower() in ("nan", "inf", "-inf") else []
    if isinstance(value, dict):
        return [number for item in value.values() for number in _numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return []


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("experiments-quick")
    threads = torch.get_num_threads()
    try:
        assert main(["--quick", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # the CLI sets 1; later tests keep the suite's setting
    return out


def test_report_links_existing_png_figures(quick_report: Path) -> None:
    report = (quick_report / "report.md").read_text(encoding="utf-8")
    for part in (
        "## 1. Synthetic densities",
        "## 2. Rotated digits",
        "## 3. Coupling ablation",
        "## 5. Against generic flows",
    ):
        assert part in report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    expected = {
        "figures/synthetic_densities.png",
        "figures/digits_val_bpd.png",
        "figures/coupling_group_bpd.png",
    }
    assert expected <= set(links)
    for link in links:
        assert (quick_report / link).read_bytes().startswith(PNG_SIGNATURE)


def test_results_are_finite_and_complete(quick_report: Path) -> None:
    results = json.loads((quick_report / "results.json").read_text(encoding="utf-8"))
    numbers = _numbers(results)
    assert numbers and all(math.isfinite(number) for number in numbers)
    synthetic = results["parts"]["synthetic"]["results"]
    for density in ("eight_gaussians", "rings"):
        assert {"trivial", "C4", "C8", "D4", "D8"} <= set(synthetic[density])
        # Exact equivariance of the G-residual flows holds even after a few steps.
        for group in ("C4", "C8", "D4", "D8"):
            assert synthetic[density][group]["invariance_error_own_group"] < 1e-3
    digits = results["parts"]["digits"]["results"]
    assert len(digits) >= 3
    for entry in digits.values():
        assert 0 < entry["test_bpd"] < 16 and 0 < entry["average_group_bpd"] < 16
    peers = results["parts"]["peers"]
    models = {row["model"] for table in peers.values() for row in table}
    assert any(model.startswith("zuko NSF") for model in models)
    assert {row["task"].split(" (")[0] for row in peers["data_efficiency"]} == {
        "D4 digits 10%",
        "D4 digits 30%",
        "D4 digits",
    }
    checkpoints = sorted(path.name for path in (quick_report / "checkpoints").iterdir())
    assert "digits-resflow-augmented.safetensors" in checkpoints
    assert "eight_gaussians-D8.safetensors" in checkpoints
