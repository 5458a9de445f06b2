"""``python -m experiments [--quick] [--out DIR] [--parts 1,2,3]``: run and write the report."""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from experiments.coupling import evaluate_coupling, render_coupling, run_coupling
from experiments.digits import evaluate_digits, render_digits, run_digits
from experiments.peers import render_peers, run_peers
from experiments.report import Section
from experiments.scales import FULL, QUICK, Scale
from experiments.synthetic import evaluate_synthetic, render_synthetic, run_synthetic

REPORT = "report.md"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"

# A part trains (run_*), evaluates (evaluate_*) and renders (render_*); here they are chained,
# and each part gives its report section and its entry in results.json.
PartRunner = Callable[[Scale, Path], tuple[Section, dict[str, Any]]]


def _synthetic(scale: Scale, out_dir: Path) -> tuple[Section, dict[str, Any]]:
    result = evaluate_synthetic(run_synthetic(scale.synthetic, out_dir / CHECKPOINTS))
    return render_synthetic(result, out_dir), result.numbers()


def _digits(scale: Scale, out_dir: Path) -> tuple[Section, dict[str, Any]]:
    result = evaluate_digits(run_digits(scale.digits, out_dir / CHECKPOINTS))
    return render_digits(result, out_dir), result.numbers()


def _coupling(scale: Scale, out_dir: Path) -> tuple[Section, dict[str, Any]]:
    result = evaluate_coupling(run_coupling(scale.coupling, out_dir / CHECKPOINTS))
    return render_coupling(result, out_dir), result.numbers()


def _peers(scale: Scale, out_dir: Path) -> tuple[Section, dict[str, Any]]:
    result = run_peers(scale.name == "quick")
    return render_peers(result), result.numbers()


PARTS: dict[str, tuple[str, PartRunner]] = {
    "1": ("synthetic", _synthetic),
    "2": ("digits", _digits),
    "3": ("coupling", _coupling),
    "5": ("peers", _peers),
}


def _parts(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"--parts {value!r}: choose a comma-separated subset of {', '.join(PARTS)}"
        )
    return parts


def _json_safe(value: object) -> object:
    """NaN and infinities become strings, so results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def run(scale: Scale, out_dir: Path, parts: list[str], command: str) -> Path:
    """Runs ``parts`` at ``scale``, writes ``report.md`` and ``results.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    started = time.perf_counter()
    sections: list[Section] = []
    results: dict[str, object] = {"scale": scale.name, "parts": {}}
    for part in parts:
        name, runner = PARTS[part]
        logging.getLogger(__name__).info("part %s (%s) at scale %s", part, name, scale.name)
        section, numbers = runner(scale, out_dir)
        sections.append(section)
        results["parts"][name] = numbers  # type: ignore[index]
    total = time.perf_counter() - started
    results["seconds"] = total
    header = (
        f"# efnf: the paper's experiments at CPU scale ({scale.name})\n\n"
        f"Command: `{command}`. Total {total:.0f} s on {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}. Seeded: the same "
        "command gives the same models and numbers on the same machine and library versions. "
        "Checkpoints of every model are in `checkpoints/` (safetensors, loadable with "
        "`flows.checkpoint.load_flow`); all numbers are also in `results.json`."
    )
    report = "\n\n".join([header, *(section.markdown() for section in sections)]) + "\n"
    (out_dir / REPORT).write_text(report, encoding="utf-8")
    (out_dir / RESULTS).write_text(
        json.dumps(_json_safe(results), indent=2, allow_nan=False), encoding="utf-8"
    )
    return out_dir / REPORT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the minutes-long smoke-test size")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: reports/experiments/<quick|full>)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: these models are too small to gain from more, and on a "
        "busy machine extra threads mostly wait on each other)",
    )
    parser.add_argument(
        "--parts",
        type=_parts,
        default=list(PARTS),
        help="comma-separated parts to run, e.g. 1,2 (default: 1,2,3,5; part 4 is the GPU runs "
        "of experiments/gpu)",
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: give at least 1")
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    scale = QUICK if args.quick else FULL
    out_dir = args.out or Path("reports") / "experiments" / scale.name
    command = " ".join(["python -m experiments", *(argv if argv is not None else sys.argv[1:])])
    path = run(scale, out_dir, args.parts, command)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
