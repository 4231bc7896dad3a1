"""What the LanceDB tables hold: their schemas, and the records and arrays read from them.

Three tables, each created with an explicit pyarrow schema the first time it is written:

- ``cvs``: one row per CV: its text, its profile as JSON (the pydantic model is the row
  content), the scorer's feature columns (``match.features``, computed before storing)
  and its three section vectors, plus their sum (``SUM_VECTOR_COLUMN``).
- ``jds``: the same for job descriptions (no feature columns).
- ``matches``: one row per (job, CV) scored, with the ``MatchResult`` as JSON.

The key columns carry Lance's ``unenforced-primary-key`` marker so that two processes
(Ray workers) inserting the same new key at once conflict and retry instead of both
committing a row: without it, concurrent inserts of one key leave duplicates
(lance-format/lance#4585). Lance only supports single-column keys there, so ``matches``
is keyed on one ``match_key`` column, ``"<job_id>:<cv_id>"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from cvmatch_ray.ids import text_hash, validate_id
from cvmatch_ray.match.features import (
    LEXICAL_TEXT_COLUMN,
    PROFILE_FEATURE_COLUMNS,
    VECTOR_COLUMNS,
)
from cvmatch_ray.schemas import (
    CVProfile,
    CVPublic,
    CVStats,
    JDProfile,
    JDPublic,
    Provenance,
    ScoreBreakdown,
)

CVS = "cvs"
JDS = "jds"
MATCHES = "matches"

# The sum of a CV's three section vectors. The scorer's semantic component is the mean
# cosine over all nine (CV section, JD section) pairs, which equals
# sum(CV sections) . sum(JD sections) / 9: a dot-product search on this column ranks the
# pool exactly by that component.
SUM_VECTOR_COLUMN = "vec_sum"
SEARCH_VECTOR_COLUMNS: tuple[str, ...] = ("vec_title", SUM_VECTOR_COLUMN)

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}


# -------------------------------------------------------------------------- schemas


def _key(name: str) -> pa.Field:
    return pa.field(name, pa.string(), nullable=False, metadata=_PRIMARY_KEY)


def _vector_fields(dim: int) -> list[pa.Field]:
    return [pa.field(name, pa.list_(pa.float32(), dim), nullable=False) for name in VECTOR_COLUMNS]


def cvs_schema(dim: int) -> pa.Schema:
    """Schema of the ``cvs`` table for ``dim``-dimensional section vectors."""
    return pa.schema(
        [
            _key("cv_id"),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("filename", pa.string()),
            pa.field("text", pa.large_string(), nullable=False),
            pa.field("profile_json", pa.large_string(), nullable=False),
            pa.field("stats_json", pa.string(), nullable=False),
            pa.field("provenance_json", pa.string(), nullable=False),
            pa.field("flags", pa.list_(pa.string()), nullable=False),
            pa.field("skills", pa.list_(pa.string()), nullable=False),
            pa.field("experience_months", pa.int32(), nullable=False),
            pa.field("education_rank", pa.int8(), nullable=False),
            pa.field("titles", pa.list_(pa.string()), nullable=False),
            pa.field("norm_titles", pa.list_(pa.string()), nullable=False),
            pa.field("skill_lines", pa.list_(pa.string()), nullable=False),
            pa.field(LEXICAL_TEXT_COLUMN, pa.large_string(), nullable=False),
            pa.field("lex_terms", pa.list_(pa.string()), nullable=False),
            pa.field("lex_tfs", pa.list_(pa.int32()), nullable=False),
            pa.field("lex_len", pa.int32(), nullable=False),
            *_vector_fields(dim),
            pa.field(SUM_VECTOR_COLUMN, pa.list_(pa.float32(), dim), nullable=False),
            pa.field("role_months", pa.list_(pa.int32()), nullable=False),
            pa.field("role_titles", pa.list_(pa.string()), nullable=False),
            pa.field("role_occupations", pa.list_(pa.string()), nullable=False),
            pa.field("role_skills", pa.list_(pa.list_(pa.string())), nullable=False),
            pa.field("created_at", _TIMESTAMP, nullable=False),
        ]
    )


def jds_schema(dim: int) -> pa.Schema:
    """Schema of the ``jds`` table for ``dim``-dimensional section vectors."""
    return pa.schema(
        [
            _key("jd_id"),
            pa.field("content_hash", pa.string(), nullable=False),
            pa.field("filename", pa.string()),
            pa.field("text", pa.large_string(), nullable=False),
            pa.field("profile_json", pa.large_string(), nullable=False),
            pa.field("provenance_json", pa.string(), nullable=False),
            *_vector_fields(dim),
            pa.field("created_at", _TIMESTAMP, nullable=False),
        ]
    )


#: The stored form of a match result: its score, breakdown and what they were computed from
#: (the JD's skills each CV has, the months counted); the evidence and the explanation are
#: built again from these and the CV's stored lines when a result is read.
MATCH_ROW_COLUMNS: tuple[str, ...] = (
    "jd_id", "cv_id", "score", *ScoreBreakdown.model_fields, "required_hits", "preferred_hits",
    "experience_months", "counted_months", "education_rank", "statements",
)


def matches_schema() -> pa.Schema:
    """Schema of the ``matches`` table (one row per job and CV, ``MATCH_ROW_COLUMNS``)."""
    return pa.schema(
        [
            _key("match_key"),
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("jd_id", pa.string(), nullable=False),
            pa.field("cv_id", pa.string(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
            # A component that does not apply to the job (a JD without a title...) is null.
            *(pa.field(name, pa.float64()) for name in ScoreBreakdown.model_fields),
            pa.field("required_hits", pa.list_(pa.bool_()), nullable=False),  # in the JD's order
            pa.field("preferred_hits", pa.list_(pa.bool_()), nullable=False),
            pa.field("experience_months", pa.int32(), nullable=False),
            pa.field("counted_months", pa.float64()),  # null: relevant experience was off
            pa.field("education_rank", pa.int32(), nullable=False),
            pa.field("statements", pa.bool_(), nullable=False),  # skills counted by requirement statement
            pa.field("chunk", pa.int32(), nullable=False),  # the job's chunk that scored it (-1: none)
            pa.field("created_at", _TIMESTAMP, nullable=False),
        ]
    )


def schema_dim(schema: pa.Schema) -> int:
    """The section vectors' dimension in a ``cvs`` or ``jds`` table schema."""
    return int(schema.field(VECTOR_COLUMNS[0]).type.list_size)


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Column-wise Arrow table from row dicts; vectors go through one numpy stack each."""
    arrays: list[pa.Array] = []
    for f in schema:
        if pa.types.is_fixed_size_list(f.type):
            dim = f.type.list_size
            matrix = np.stack([np.asarray(r[f.name], dtype=np.float32) for r in rows]) if rows else np.zeros((0, dim))
            flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1), pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, list_size=dim))
        else:
            arrays.append(pa.array([r[f.name] for r in rows], type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def vector_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list vector column as a ``[rows, dim]`` float32 array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    # flatten() honours the array's offset (a slice), unlike .values.
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(arr), arr.type.list_size)


def feature_matrix(table: pa.Table, column: str) -> np.ndarray:
    """A fixed-size-list vector column of ``table`` as a ``[rows, dim]`` float32 array."""
    return vector_matrix(table.column(column))


# -------------------------------------------------------------------------- records


def _now() -> datetime:
    return datetime.now(UTC)


def _check_vectors(vectors: np.ndarray, owner: str) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] != len(VECTOR_COLUMNS):
        raise ValueError(f"{owner} vectors must have shape [{len(VECTOR_COLUMNS)}, dim], got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{owner} vectors contain NaN or infinity")
    return v


def _vectors_from_row(row: Mapping[str, Any]) -> np.ndarray:
    return np.asarray([row[name] for name in VECTOR_COLUMNS], dtype=np.float32)


@dataclass(kw_only=True)
class CVRecord:
    """Everything stored about one CV.

    ``vectors`` is ``[3, dim]`` float32, rows in ``embed.SECTIONS`` order. ``features`` are
    the scorer's columns (``match.features.cv_feature_columns``), computed by whoever
    builds the record; the store only persists them.
    """

    cv_id: str
    filename: str | None
    text: str
    profile: CVProfile
    stats: CVStats
    provenance: Provenance
    flags: list[str] = field(default_factory=list)
    features: Mapping[str, Any]
    vectors: np.ndarray
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.vectors = _check_vectors(self.vectors, "CV")
        if set(self.features) != set(PROFILE_FEATURE_COLUMNS):
            raise ValueError(f"CV features must have exactly the columns {PROFILE_FEATURE_COLUMNS}, "
                             f"got {tuple(self.features)}")

    @property
    def content_hash(self) -> str:
        """Hash of the extracted text: spots the same CV uploaded as PDF and as DOCX."""
        return text_hash(self.text)

    def to_row(self) -> dict[str, Any]:
        """This CV as a ``cvs`` row (vectors as numpy rows)."""
        row: dict[str, Any] = {
            "cv_id": validate_id(self.cv_id, "cv_id"),
            "content_hash": self.content_hash,
            "filename": self.filename,
            "text": self.text,
            "profile_json": self.profile.model_dump_json(),
            "stats_json": self.stats.model_dump_json(),
            "provenance_json": self.provenance.model_dump_json(),
            "flags": list(self.flags),
            **self.features,
            "created_at": self.created_at or _now(),
        }
        for i, name in enumerate(VECTOR_COLUMNS):
            row[name] = self.vectors[i]
        row[SUM_VECTOR_COLUMN] = self.vectors.sum(axis=0, dtype=np.float32)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CVRecord:
        """Inverse of ``to_row`` (also accepts rows from ``pa.Table.to_pylist()``)."""
        return cls(
            cv_id=row["cv_id"],
            filename=row["filename"],
            text=row["text"],
            profile=CVProfile.model_validate_json(row["profile_json"]),
            stats=CVStats.model_validate_json(row["stats_json"]),
            provenance=Provenance.model_validate_json(row["provenance_json"]),
            flags=list(row["flags"] or []),
            features={c: row[c] for c in PROFILE_FEATURE_COLUMNS},
            vectors=_vectors_from_row(row),
            created_at=row["created_at"],
        )

    def to_public(self) -> CVPublic:
        """The API view of this CV (no text, no vectors)."""
        return CVPublic(
            cv_id=self.cv_id,
            filename=self.filename,
            profile=self.profile,
            stats=self.stats,
            provenance=self.provenance,
            flags=list(self.flags),
            created_at=self.created_at,
        )


@dataclass(kw_only=True)
class JDRecord:
    """Everything stored about one job description (``vectors`` as in ``CVRecord``)."""

    jd_id: str
    filename: str | None
    text: str
    profile: JDProfile
    provenance: Provenance
    vectors: np.ndarray
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.vectors = _check_vectors(self.vectors, "JD")

    @property
    def content_hash(self) -> str:
        """Hash of the JD's text."""
        return text_hash(self.text)

    def to_row(self) -> dict[str, Any]:
        """This JD as a ``jds`` row (vectors as numpy rows)."""
        row: dict[str, Any] = {
            "jd_id": validate_id(self.jd_id, "jd_id"),
            "content_hash": self.content_hash,
            "filename": self.filename,
            "text": self.text,
            "profile_json": self.profile.model_dump_json(),
            "provenance_json": self.provenance.model_dump_json(),
            "created_at": self.created_at or _now(),
        }
        for i, name in enumerate(VECTOR_COLUMNS):
            row[name] = self.vectors[i]
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JDRecord:
        """Inverse of ``to_row``."""
        return cls(
            jd_id=row["jd_id"],
            filename=row["filename"],
            text=row["text"],
            profile=JDProfile.model_validate_json(row["profile_json"]),
            provenance=Provenance.model_validate_json(row["provenance_json"]),
            vectors=_vectors_from_row(row),
            created_at=row["created_at"],
        )

    def to_public(self) -> JDPublic:
        """The API view of this JD."""
        return JDPublic(
            jd_id=self.jd_id,
            filename=self.filename,
            profile=self.profile,
            provenance=self.provenance,
            created_at=self.created_at,
        )
