"""Write job outputs as CSV or Parquet (chosen by the file's extension)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cvmatch_ray.process import Outcome
from cvmatch_ray.schemas import MatchResult


def _write(table: pa.Table, path: str) -> None:
    if path.endswith(".parquet"):
        pq.write_table(table, path)
    elif path.endswith(".csv"):
        pacsv.write_csv(table, path)
    else:
        raise ValueError(f"export path must end in .csv or .parquet: {path}")


def export_results(results: Sequence[MatchResult], path: str) -> None:
    """Ranked match results, one row per CV, the breakdown flattened into columns."""
    rows = []
    for rank, r in enumerate(results, 1):
        row = {"rank": rank, "cv_id": r.cv_id, "jd_id": r.jd_id, "score": r.score}
        row |= {f"breakdown_{k}": v for k, v in r.breakdown.model_dump().items()}
        row |= {
            "matched_skills": json.dumps(r.matched_skills),
            "missing_required": json.dumps(r.missing_required),
            "missing_preferred": json.dumps(r.missing_preferred),
            "explanation": r.explanation,
        }
        rows.append(row)
    _write(pa.Table.from_pylist(rows), path)


def export_outcomes(outcomes: Sequence[Outcome], path: str) -> None:
    """Per-file ingest outcomes: file, id, skipped, and stage/code/error for failures."""
    rows = [
        {"file": o.file, "id": o.id, "skipped": o.skipped, "stage": o.stage, "code": o.code, "error": o.error}
        for o in outcomes
    ]
    _write(pa.Table.from_pylist(rows, schema=pa.schema([
        ("file", pa.string()), ("id", pa.string()), ("skipped", pa.bool_()),
        ("stage", pa.string()), ("code", pa.string()), ("error", pa.string()),
    ])), path)
