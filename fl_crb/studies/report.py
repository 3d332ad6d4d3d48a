"""Writing study results: CSV files and markdown tables, shared by both studies."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows as CSV, columns in order of first appearance (missing cells empty)."""
    if not rows:
        raise ValueError(f"nothing to write to {path}")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: list[dict], columns: list[str], digits: int = 3) -> list[str]:
    """The lines of a markdown table of `columns` (floats to `digits` significant digits)."""

    def cell(value) -> str:
        return f"{value:.{digits}g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines
