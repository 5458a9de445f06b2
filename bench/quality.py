"""The quality benchmark: efnf's flows against zuko's generic flows, side by side, in one run.

    python bench/quality.py                      # every task (~20 min on 2 cores)
    python bench/quality.py --quick              # a tiny smoke run (CI)
    python bench/quality.py --tasks points       # 2-D points only

Prints one table of quality (lower is better), parameters and wall time per task and model:
the point tasks (:mod:`bench.quality_points`), and the image tasks and data-efficiency table
(``bench/quality_images.py``, when that module is present). zuko is a benchmark dependency
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quality_table import QualityRow, format_table

TASKS = ("points", "images")


def _image_rows(quick: bool, seed: int) -> list[QualityRow] | None:
    """The image tasks' rows, or None (with a note) where bench/quality_images.py is absent."""
    try:
        images = importlib.import_module("bench.quality_images")
    except ModuleNotFoundError as error:
        if error.name not in ("bench.quality_images",):
            raise
        print("note: bench/quality_images.py is not in this tree; image tasks skipped")
        return None
    return images.image_rows(quick, seed) + images.data_efficiency_rows(quick, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}"
    )
    args = parser.parse_args(argv)
    tasks = [task for task in args.tasks.split(",") if task]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks {args.tasks}: unknown {unknown}; choose from {list(TASKS)}")
    start = time.perf_counter()
    rows: list[QualityRow] = []
    if "points" in tasks:
        from bench.quality_points import point_rows

        rows += point_rows(args.quick, args.seed)
    if "images" in tasks:
        rows += _image_rows(args.quick, args.seed) or []
    print(format_table(rows))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
