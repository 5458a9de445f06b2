"""The report: Markdown tables and matplotlib figures written under the output folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

__all__ = ["Section", "format_number", "markdown_table", "save_figure"]


def format_number(value: float | int | None, digits: int = 3) -> str:
    """A table cell: integers as they are, floats to ``digits`` decimals or in e-notation."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; cells are formatted with :func:`format_number`."""

    def cell(value: object) -> str:
        if value is None or isinstance(value, int | float):
            return format_number(value)  # type: ignore[arg-type]
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def save_figure(figure: Figure, path: Path) -> Path:
    """Writes ``figure`` as a PNG and closes it (figures hold memory until closed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


class Section:
    """One part of the report: a title, paragraphs, tables and figure links, in order."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[str] = []

    def text(self, paragraph: str) -> None:
        self.blocks.append(paragraph.strip())

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(markdown_table(header, rows))

    def figure(self, path: Path, out_dir: Path, caption: str) -> None:
        self.blocks.append(f"![{caption}]({path.relative_to(out_dir).as_posix()})\n\n*{caption}*")

    def markdown(self) -> str:
        return "\n\n".join([f"## {self.title}", *self.blocks])
