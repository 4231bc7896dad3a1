"""Print a benchmark's tables: rich tables on a terminal, or one JSON document with ``--json``.

Scripts build ``rich`` tables as before and hand them here; ``--json`` prints the same cells
as ``{"tables": [{"title", "columns", "rows": [{column: value}]}], ...extra}``, numbers as
numbers (``"1,234"`` -> 1234, ``"8.2x"`` -> 8.2), everything else as the text shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

_NUMBER = re.compile(r"^-?[\d,]*\.?\d+x?$")


def _value(text: str) -> Any:
    if _NUMBER.match(text):
        number = float(text.rstrip("x").replace(",", ""))
        return int(number) if number.is_integer() and "." not in text else number
    return text


def table_rows(table: Table) -> list[dict[str, Any]]:
    """A rich table's rows as dicts of column header -> value."""
    headers = [str(c.header) for c in table.columns]
    cells = [[str(cell) for cell in c._cells] for c in table.columns]
    return [dict(zip(headers, (_value(col[i]) for col in cells), strict=True)) for i in range(table.row_count)]


def emit(tables: Sequence[Table], *, as_json: bool, **extra: Any) -> None:
    """Print ``tables`` (and ``extra`` facts, e.g. the load average) as text or as JSON."""
    if as_json:
        doc = {"tables": [{"title": str(t.title or ""), "rows": table_rows(t)} for t in tables], **extra}
        print(json.dumps(doc, indent=2))
        return
    console = Console()
    for t in tables:
        console.print(t)
    for key, value in extra.items():
        print(f"{key.replace('_', ' ')}: {value}")
