"""A scored batch in its stored form, and back.

A match job stores, for every CV, the score, its breakdown and what they were computed from
(which of the JD's skills the CV has, the months counted): arrays, written as Arrow columns
without building a result object per CV. The evidence and the explanation, which quote the
CV's own lines, are built only for the results someone reads (``stored_batch(...).results()``),
from those columns and the CV's stored lines: the same ``MatchResult`` the in-process ranking
gives, to the last digit.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.match.scoring import COMPONENTS, JDFeatures, ScoredBatch


def _hits_column(hits: np.ndarray) -> pa.Array:
    """[n, k] bools as a list column (k may be 0)."""
    n, k = hits.shape
    flat = pa.array(np.ascontiguousarray(hits, dtype=bool).reshape(-1), pa.bool_())
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * k, pa.int32()), flat)


def _hits_matrix(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A list column of ``width`` bools per row as an [n, width] array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(bool)
    if values.size != len(arr) * width:
        raise ValueError(f"stored skill hits do not match the JD's {width} skills")
    return values.reshape(len(arr), width)


def match_rows(batch: ScoredBatch) -> pa.Table:
    """The stored form of ``batch`` (``storage.records.MATCH_ROW_COLUMNS``), in row order."""
    n = len(batch)
    columns: dict[str, pa.Array] = {
        "jd_id": pa.array([batch.jd.jd_id] * n, pa.string()),
        "cv_id": pa.array(batch.cv_ids.tolist(), pa.string()),
        "score": pa.array(batch.scores, pa.float64()),
    }
    for name in COMPONENTS:
        values = batch.components.get(name)
        columns[name] = pa.nulls(n, pa.float64()) if values is None else pa.array(values, pa.float64())
    columns["required_hits"] = _hits_column(batch.required_hits)
    columns["preferred_hits"] = _hits_column(batch.preferred_hits)
    columns["experience_months"] = pa.array(batch.experience_months, pa.int32())
    counted = batch.counted_months
    columns["counted_months"] = pa.nulls(n, pa.float64()) if counted is None else pa.array(counted, pa.float64())
    education = batch.education_rank if batch.education_rank is not None else np.zeros(n, dtype=np.int64)
    columns["education_rank"] = pa.array(education, pa.int32())
    columns["statements"] = pa.array([batch.statements] * n, pa.bool_())
    return pa.table(columns)


def stored_batch(jd: JDFeatures, rows: pa.Table, cv_table: pa.Table) -> ScoredBatch:
    """``rows`` (stored by ``match_rows`` for ``jd``) as a ``ScoredBatch`` again, in their order.

    Args:
        jd: the features of the JD the rows were scored against.
        rows: stored rows.
        cv_table: the CVs' stored feature rows (any order; their lines are the evidence).
            A row whose CV is no longer stored (erased since) is left out.
    """
    position = {c: i for i, c in enumerate(cv_table.column("cv_id").to_pylist())}
    keep = [i for i, c in enumerate(rows.column("cv_id").to_pylist()) if c in position]
    rows = rows.take(pa.array(keep, pa.int64()))
    cv_ids = rows.column("cv_id").to_pylist()
    texts = cv_table.take(pa.array([position[c] for c in cv_ids], pa.int64()))

    def floats(name: str) -> np.ndarray | None:
        column = rows.column(name)
        if column.null_count == len(column) and len(column):
            return None
        return pc.fill_null(column, 0.0).to_numpy(zero_copy_only=False).astype(np.float64)

    components = {name: floats(name) for name in COMPONENTS}
    if not len(rows):  # an empty batch: which components apply is unknown, and nothing reads them
        components = dict.fromkeys(COMPONENTS)
    education = rows.column("education_rank").to_numpy(zero_copy_only=False).astype(np.int64)
    statements = rows.column("statements").to_pylist()
    return ScoredBatch(
        jd=jd,
        cv_ids=np.asarray(cv_ids, dtype=object),
        scores=rows.column("score").to_numpy(zero_copy_only=False).astype(np.float64),
        components=components,
        required_hits=_hits_matrix(rows.column("required_hits"), len(jd.required)),
        preferred_hits=_hits_matrix(rows.column("preferred_hits"), len(jd.preferred)),
        experience_months=rows.column("experience_months").to_numpy(zero_copy_only=False).astype(np.int64),
        education_rank=education,
        table=texts,
        counted_months=floats("counted_months"),
        statements=bool(statements[0]) if statements else False,
    )
