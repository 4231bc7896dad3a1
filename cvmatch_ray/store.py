"""LanceDB tables: raw documents, standardized CVs and JDs, match results.

Four tables, each created with an explicit pyarrow schema the first time it is written:

- ``documents``: the raw uploaded bytes, stored before any processing so that an accepted
  upload survives a crash of the pipeline that follows.
- ``cvs``: one row per CV: its text, its profile as JSON (the pydantic model is the row
  content), the flattened features the vectorized scorer reads (skills, months of
  experience, education rank, titles) and its three section vectors.
- ``jds``: the same for job descriptions.
- ``matches``: one row per (job, CV) scored, with the ``MatchResult`` as JSON.

Writes are idempotent upserts (``merge_insert`` on the key) and batched: one commit per
call, never per row. The key columns carry Lance's ``unenforced-primary-key`` marker so that
two processes (Ray workers) inserting the same new key at once conflict and retry instead of
both committing a row: without it, concurrent inserts of one key leave duplicates
(lance-format/lance#4585). Lance only supports single-column keys there, so ``matches``
is keyed on one ``match_key`` column, ``"<job_id>:<cv_id>"``.

Every commit adds a fragment (a file) and a version. A table that many small writes built
(uploads one batch at a time, a match job one chunk at a time) is slow to read and to
upsert into, since each does work per fragment: 80 fragments of 10,000 CVs made a 50-CV
read 3x slower and an upsert 2x slower here. So a ``Store`` compacts a table after every
``compact_every`` of its own commits to it (LanceDB's advice is about 20): small fragments
are merged into ones of up to ``COMPACT_TARGET_ROWS`` rows, so a compaction rewrites
at most about that many rows however large the table grows; the lookup and search
indexes take in the rows written since; versions older than ``KEEP_VERSIONS_FOR`` are
removed.

The store works on any LanceDB URI: a local folder on a laptop, ``s3://``, ``gs://`` or
``az://`` on a cluster.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import lancedb
import numpy as np
from lancedb.index import FTS, BTree, HnswSq, IvfFlat, IvfPq
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.embed import blind_text, cv_lexical_text
from cvmatch_ray.schemas import (
    CVProfile,
    CVPublic,
    CVStats,
    JDProfile,
    JDPublic,
    MatchResult,
    Provenance,
)

if TYPE_CHECKING:
    from cvmatch_ray.match.scoring import CodedLists

logger = logging.getLogger(__name__)

DOCUMENTS = "documents"
CVS = "cvs"
JDS = "jds"
MATCHES = "matches"

# Section vectors as stored; the order is embed.SECTIONS (title, skills, experience).
VECTOR_COLUMNS: tuple[str, ...] = ("vec_title", "vec_skills", "vec_experience")
# The sum of a CV's three section vectors. The scorer's semantic component is the mean
# cosine over all nine (CV section, JD section) pairs, which equals
# sum(CV sections) . sum(JD sections) / 9: a dot-product search on this column ranks the
# pool exactly by that component.
SUM_VECTOR_COLUMN = "vec_sum"
SEARCH_VECTOR_COLUMNS: tuple[str, ...] = ("vec_title", SUM_VECTOR_COLUMN)
# What the vectorized scorer reads of each CV: no text, no PII. The lexical columns are the
# blinded text's term counts (see ``lexical_counts``); ``skill_lines`` is, for each entry of
# ``skills``, the blinded CV line that mentions it (the evidence shown with a match).
LEXICAL_COLUMNS: tuple[str, ...] = ("lex_terms", "lex_tfs", "lex_len")
FEATURE_COLUMNS: tuple[str, ...] = (
    "cv_id",
    "skills",
    "experience_months",
    "education_rank",
    "titles",
    "norm_titles",
    "skill_lines",
    *LEXICAL_COLUMNS,
    *VECTOR_COLUMNS,
)
# The column the full-text index covers: the CV text with contact details and gendered
# words removed (``embed.cv_lexical_text``), so full-text search is as blind as the score.
LEXICAL_TEXT_COLUMN = "lexical_text"

DocumentKind = Literal["cv", "jd"]
_KINDS: frozenset[str] = frozenset({"cv", "jd"})

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}

# Document ids are the lowercase hex of a hash (document_id), or a UUID; job ids are
# short names such as "job_<hex>". Anything else is rejected before it reaches a SQL
# predicate: with no quote, space or backslash possible, quoting them is safe.
_ID_RE = re.compile(r"[0-9a-f][0-9a-f-]{7,63}")
_JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

# read_cv_features sends a `cv_id IN (...)` predicate while the ids are at most this share
# of the table, and past it scans the projected columns and filters in Arrow. The IN cost
# grows with the number of ids, the scan's with the table: on 10,000 CVs (2 CPUs) the two
# cross at about 1,000 ids (IN: 300 ids 38 ms, 3,000 ids 211 ms; scan: 80-95 ms either way).
# See benchmarks/bench_embed.py.
SQL_IN_MAX_SHARE = 0.1

#: Commits to one table through one ``Store`` between two compactions of it.
COMPACT_EVERY = 20
#: Compaction merges fragments smaller than this into fragments of about this many rows.
COMPACT_TARGET_ROWS = 8192
#: Versions are kept this long after they are superseded (a reader never needs one: reads
#: see the latest version), then their files are removed by the next compaction.
KEEP_VERSIONS_FOR = timedelta(hours=1)


class StoreSchemaError(RuntimeError):
    """An existing table does not have the schema this code expects (e.g. another dim)."""


# ------------------------------------------------------------------------------ ids


def document_id(data: bytes | str) -> str:
    """Content-derived id of a document: first 32 hex chars of the SHA-256 of its bytes.

    The same bytes always give the same id, so re-uploading a file is idempotent. A JD
    given as text is hashed as its UTF-8 bytes.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:32]


def text_hash(text: str) -> str:
    """Hash of an extracted text (same form as ``document_id``): equal texts, equal hash."""
    return document_id(text.encode("utf-8"))


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a well-formed id (lowercase hex, optionally with dashes).

    Raises:
        ValueError: anything else, including values that could break out of a SQL string.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid {what}: {str(value)[:80]!r} (expected lowercase hex)")
    return value


def validate_job_id(value: str) -> str:
    """Return ``value`` if it is a well-formed job id (letters, digits, ``_``, ``-``).

    Raises:
        ValueError: anything else.
    """
    if not isinstance(value, str) or not _JOB_ID_RE.fullmatch(value):
        raise ValueError(f"invalid job_id: {str(value)[:80]!r} (expected letters, digits, '_' or '-')")
    return value


def _eq(column: str, value: str) -> str:
    checked = validate_job_id(value) if column == "job_id" else validate_id(value, column)
    return f"{column} = '{checked}'"


def _in(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join(f"'{validate_id(v, column)}'" for v in values)
    return f"{column} IN ({quoted})"



# ------------------------------------------------------------------------- lexical
# The lexical signal is Okapi BM25 over the blinded CV text. Its tokens are lower-cased
# words of letters and digits ("c++" and "c#" keep their marks), minus stopwords and
# single characters: the same rule for CVs (stored term counts) and JD queries.

_LEX_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9+#]*")
LEXICAL_STOPWORDS: frozenset[str] = frozenset(
    """a an and are as at be been but by can for from has have in into is it its of on or our
    that the their them they this to was were will with within you your we us not no all any
    other such than then there these those who whom which what when where while would should
    may might must also etc per via""".split()
)


def lexical_tokens(text: str) -> list[str]:
    """The BM25 tokens of ``text``, in order."""
    return [t for t in _LEX_TOKEN_RE.findall(text.lower()) if len(t) > 1 and t not in LEXICAL_STOPWORDS]


def lexical_counts(text: str) -> tuple[list[str], list[int], int]:
    """``(terms, term frequencies, token count)`` of ``text``; terms sorted, unique."""
    tokens = lexical_tokens(text)
    counts: dict[str, int] = {}
    for t in tokens:
        counts[t] = counts.get(t, 0) + 1
    terms = sorted(counts)
    return terms, [counts[t] for t in terms], len(tokens)


def _distance(column: str) -> Literal["cosine", "dot"]:
    """Section vectors are unit vectors (cosine); their sum is searched by dot product."""
    return "dot" if column == SUM_VECTOR_COLUMN else "cosine"


def _ann_config(index_type: str, partitions: int | None, sub_vectors: int | None, distance: str) -> Any:
    """The LanceDB index config for an ANN index type name."""
    if index_type == "IVF_PQ":
        return IvfPq(distance_type=distance, num_partitions=partitions, num_sub_vectors=sub_vectors)
    if index_type == "IVF_HNSW_SQ":
        return HnswSq(distance_type=distance, num_partitions=partitions)
    if index_type == "IVF_FLAT":
        return IvfFlat(distance_type=distance, num_partitions=partitions)
    raise ValueError(f"unsupported ANN index type {index_type!r}: IVF_PQ, IVF_HNSW_SQ or IVF_FLAT")


@dataclass
class PoolArrays:
    """What whole-pool retrieval reads of every CV, as arrays in one row order.

    ``Store.pool_arrays`` builds it; ``version`` is the CV table version it was read at.
    """

    version: int
    cv_ids: np.ndarray  # [n] object (str)
    vectors: dict[str, np.ndarray]  # SEARCH_VECTOR_COLUMNS -> [n, dim] float32
    experience_months: np.ndarray  # [n] int64
    education_rank: np.ndarray  # [n] int64
    skills: CodedLists  # canonical skills per CV
    norm_titles: CodedLists  # taxonomy occupations per CV
    dataset: Any = field(default=None, repr=False)  # the Lance dataset at ``version``
    _norms: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.cv_ids)

    def features(self, positions: np.ndarray) -> pa.Table:
        """The scoring columns (``FEATURE_COLUMNS``) of the CVs at these row positions.

        Read from the dataset version these arrays came from, by position: no id filter
        to evaluate over the table (about half the time of ``Store.read_cv_features``).
        """
        if self.dataset is None or not len(positions):
            raise ValueError("no rows to read")
        return self.dataset.take(np.asarray(positions, dtype=np.int64).tolist(), columns=list(FEATURE_COLUMNS))

    def norms(self, column: str) -> np.ndarray:
        """Row norms of a vector column (computed once)."""
        if column not in self._norms:
            self._norms[column] = np.linalg.norm(self.vectors[column], axis=1)
        return self._norms[column]


def _matrix(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """A fixed-size-list vector column as a [n, dim] float32 matrix."""
    values = column.combine_chunks().values if len(column) else pa.array([], pa.float32())
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(column), dim)


@dataclass(frozen=True)
class LexicalStats:
    """Corpus statistics BM25 needs: document count, mean length and document frequencies."""

    num_docs: int
    avg_len: float
    df: Mapping[str, int]
    version: int | None = None


# A CV line quoted as evidence is cut to this many characters.
EVIDENCE_LINE_CHARS = 200
# Titles a CV is compared on by occupation: the headline and the latest job titles.
MAX_NORM_TITLES = 3


def normalized_titles(titles: Sequence[str]) -> list[str]:
    """The taxonomy occupations of the first ``MAX_NORM_TITLES`` titles (unknown ones left out)."""
    from cvmatch_ray.taxonomy import load_taxonomy

    tax = load_taxonomy()
    out: list[str] = []
    for t in titles[:MAX_NORM_TITLES]:
        occupation = tax.normalize_title(t)
        if occupation and occupation not in out:
            out.append(occupation)
    return out


def _skill_lines(profile: CVProfile, text: str) -> list[str]:
    """For each skill of ``profile``, the first (blinded) line of ``text`` that mentions it."""
    lines = [ln for ln in blind_text(text, profile.contact).splitlines() if ln.strip()]
    lowered = [ln.lower() for ln in lines]
    out: list[str] = []
    for skill in profile.skills:
        found = ""
        for form in [*skill.mentions, skill.name]:
            needle = form.lower()
            if not needle:
                continue
            idx = next((i for i, ln in enumerate(lowered) if needle in ln), None)
            if idx is not None:
                found = lines[idx][:EVIDENCE_LINE_CHARS]
                break
        out.append(found)
    return out


# -------------------------------------------------------------------------- schemas


def _key(name: str) -> pa.Field:
    return pa.field(name, pa.string(), nullable=False, metadata=_PRIMARY_KEY)


def _vector_fields(dim: int) -> list[pa.Field]:
    return [pa.field(name, pa.list_(pa.float32(), dim), nullable=False) for name in VECTOR_COLUMNS]


def documents_schema() -> pa.Schema:
    """Schema of the ``documents`` table (raw uploads)."""
    return pa.schema(
        [
            _key("id"),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("filename", pa.string()),
            pa.field("content_type", pa.string()),
            pa.field("data", pa.large_binary(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("created_at", _TIMESTAMP, nullable=False),
        ]
    )


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


def matches_schema() -> pa.Schema:
    """Schema of the ``matches`` table (one row per job and CV)."""
    return pa.schema(
        [
            _key("match_key"),
            pa.field("job_id", pa.string(), nullable=False),
            pa.field("jd_id", pa.string(), nullable=False),
            pa.field("cv_id", pa.string(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
            pa.field("result_json", pa.large_string(), nullable=False),
            pa.field("created_at", _TIMESTAMP, nullable=False),
        ]
    )


def _rows_to_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
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


def feature_matrix(table: pa.Table, column: str) -> np.ndarray:
    """A fixed-size-list vector column of ``table`` as a ``[rows, dim]`` float32 array."""
    col = table.column(column)
    dim = col.type.list_size
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    # flatten() honours the array's offset (a slice), unlike .values.
    return arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


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
class StoredDocument:
    """A raw uploaded document (the bytes as received)."""

    id: str
    kind: DocumentKind
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    created_at: datetime | None = None

    @classmethod
    def new(
        cls,
        data: bytes | str,
        *,
        kind: DocumentKind,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> StoredDocument:
        """A document for ``data``, its id derived from the bytes (text as UTF-8)."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return cls(id=document_id(raw), kind=kind, data=raw, filename=filename, content_type=content_type)

    @property
    def size(self) -> int:
        return len(self.data)

    def to_row(self) -> dict[str, Any]:
        """This document as a ``documents`` row."""
        if self.kind not in _KINDS:
            raise ValueError(f"document kind must be 'cv' or 'jd', got {self.kind!r}")
        return {
            "id": validate_id(self.id),
            "kind": self.kind,
            "filename": self.filename,
            "content_type": self.content_type,
            "data": self.data,
            "size": self.size,
            "created_at": self.created_at or _now(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredDocument:
        """Inverse of ``to_row``."""
        return cls(
            id=row["id"],
            kind=row["kind"],
            data=row["data"],
            filename=row["filename"],
            content_type=row["content_type"],
            created_at=row["created_at"],
        )


@dataclass(kw_only=True)
class CVRecord:
    """Everything stored about one CV.

    ``vectors`` is ``[3, dim]`` float32, rows in ``embed.SECTIONS`` order.
    """

    cv_id: str
    filename: str | None
    text: str
    profile: CVProfile
    stats: CVStats
    provenance: Provenance
    flags: list[str] = field(default_factory=list)
    vectors: np.ndarray
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        self.vectors = _check_vectors(self.vectors, "CV")

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
            "skills": self.profile.skill_names,
            "experience_months": self.profile.total_experience_months,
            "education_rank": self.profile.highest_education.rank,
            "titles": self.profile.titles,
            "norm_titles": normalized_titles(self.profile.titles),
            "skill_lines": _skill_lines(self.profile, self.text),
            "created_at": self.created_at or _now(),
        }
        lexical = cv_lexical_text(self.profile, self.text)
        row[LEXICAL_TEXT_COLUMN] = lexical
        row["lex_terms"], row["lex_tfs"], row["lex_len"] = lexical_counts(lexical)
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


# ---------------------------------------------------------------------------- store


def _reopen(
    uri: str,
    dim: int,
    read_consistency_interval: timedelta | None,
    storage_options: dict[str, str] | None,
    compact_every: int | None,
) -> Store:
    return Store(
        uri,
        dim=dim,
        read_consistency_interval=read_consistency_interval,
        storage_options=storage_options,
        compact_every=compact_every,
    )


class Store:
    """The LanceDB database of one cvmatch deployment.

    Cheap to create; tables are opened lazily and cached. A ``Store`` pickles as its
    arguments, so a Ray task or actor that receives one reconnects on its side.
    """

    def __init__(
        self,
        uri: str,
        *,
        dim: int,
        read_consistency_interval: timedelta | None = timedelta(0),
        storage_options: dict[str, str] | None = None,
        compact_every: int | None = COMPACT_EVERY,
    ) -> None:
        """Connect to the database at ``uri``.

        Args:
            uri: LanceDB URI: a local folder, or ``s3://``, ``gs://``, ``az://``.
            dim: dimension of the section vectors (the encoder's ``dim``).
            read_consistency_interval: how stale a read may be. The default (zero)
                makes every read see what other processes committed, which the API needs
                to serve CVs that Ray workers just wrote; ``None`` never re-checks.
            storage_options: object-store options (credentials, endpoint, region...).
            compact_every: compact a table after this many commits to it through this
                store (``None``: never; ``optimize()`` then does it on demand).

        Raises:
            ValueError: ``dim`` is not positive.
        """
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.uri = uri
        self.dim = dim
        self._read_consistency_interval = read_consistency_interval
        self._storage_options = storage_options
        self._compact_every = compact_every
        self._commits: dict[str, int] = {}
        self._db = lancedb.connect(
            uri, read_consistency_interval=read_consistency_interval, storage_options=storage_options
        )
        self._schemas: dict[str, pa.Schema] = {
            DOCUMENTS: documents_schema(),
            CVS: cvs_schema(dim),
            JDS: jds_schema(dim),
            MATCHES: matches_schema(),
        }
        self._tables: dict[str, Any] = {}
        self._lexical_cache: dict[tuple[int, int | None], LexicalStats] = {}
        # Per table version: the pool's searchable columns in memory (``pool_arrays``), and
        # any other vector column an exact search asked for.
        self._pool_cache: PoolArrays | None = None
        self._vector_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        # Serve replicas call one Store from several threads; guard the table cache.
        self._lock = threading.Lock()

    @classmethod
    def open(cls, uri: str, dim: int) -> Store:
        """Shorthand for ``Store(uri, dim=dim)``."""
        return cls(uri, dim=dim)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _reopen,
            (self.uri, self.dim, self._read_consistency_interval, self._storage_options, self._compact_every),
        )

    def __repr__(self) -> str:
        return f"Store(uri={self.uri!r}, dim={self.dim})"

    # ----------------------------------------------------------------- tables

    def _table(self, name: str, *, create: bool) -> Any | None:
        """The table ``name``; created when ``create``, else ``None`` if it does not exist."""
        table = self._tables.get(name)
        if table is not None:
            return table
        with self._lock:
            table = self._tables.get(name)
            if table is not None:
                return table
            schema = self._schemas[name]
            if create:
                # exist_ok: another process may have created it since; both then share it.
                table = self._db.create_table(name, schema=schema, exist_ok=True)
                logger.debug("table %s ready at %s", name, self.uri)
            elif name in self._db:
                table = self._db.open_table(name)
            else:
                return None
            self._check_schema(name, table.schema, schema)
            self._tables[name] = table
            return table

    @staticmethod
    def _check_schema(name: str, actual: pa.Schema, expected: pa.Schema) -> None:
        for f in expected:
            idx = actual.get_field_index(f.name)
            if idx < 0 or actual.field(idx).type != f.type:
                found = actual.field(idx).type if idx >= 0 else "missing"
                raise StoreSchemaError(
                    f"table {name!r} column {f.name!r} is {found}, expected {f.type}"
                    " (was the database written with another embedding model?)"
                )

    def _merge(self, name: str, key: str, rows: Sequence[Mapping[str, Any]], *, update: bool = True) -> None:
        """Upsert ``rows`` into ``name`` on ``key`` in one commit."""
        if not rows:
            return
        table = self._table(name, create=True)
        data = _rows_to_table(rows, self._schemas[name])
        builder = table.merge_insert(key)
        if update:
            builder = builder.when_matched_update_all()
        result = builder.when_not_matched_insert_all().execute(data)
        logger.debug(
            "%s: merged %d rows (%d inserted, %d updated, %d attempts)",
            name,
            len(rows),
            result.num_inserted_rows,
            result.num_updated_rows,
            result.num_attempts,
        )
        self._committed(name, table)

    def _committed(self, name: str, table: Any) -> None:
        """Count a commit to ``name``; compact the table every ``compact_every`` commits."""
        if self._compact_every is None:
            return
        with self._lock:
            count = self._commits.get(name, 0) + 1
            due = count >= self._compact_every
            self._commits[name] = 0 if due else count
        if due:
            self._compact(name, table)

    @staticmethod
    def _compact(name: str, table: Any) -> None:
        """Merge small fragments, index the rows written since, prune old versions.

        Best effort: a compaction that loses a race with another process's commit, or
        fails otherwise, leaves the table as it was and is tried again later.
        """
        try:
            dataset = table.to_lance()
            metrics = dataset.optimize.compact_files(target_rows_per_fragment=COMPACT_TARGET_ROWS)
            dataset.optimize.optimize_indices()
            dataset.cleanup_old_versions(older_than=KEEP_VERSIONS_FOR)
        except (OSError, RuntimeError, ValueError) as e:  # Lance maps its failures onto these
            # Usually another writer's commit won the race; harmless, and tried again later.
            logger.info("%s: compaction skipped: %s", name, e)
            return
        logger.debug("%s: compacted %d fragments into %d", name, metrics.fragments_removed, metrics.fragments_added)

    def _select(
        self, name: str, where: str | None, columns: Sequence[str] | None = None, limit: int | None = None
    ) -> pa.Table | None:
        table = self._table(name, create=False)
        if table is None:
            return None
        query = table.search()
        if where is not None:
            query = query.where(where)
        if columns is not None:
            query = query.select(list(columns))
        return query.limit(limit).to_arrow()

    def _delete(self, name: str, where: str) -> int:
        table = self._table(name, create=False)
        if table is None:
            return 0
        deleted = int(table.delete(where).num_deleted_rows)
        if deleted:
            self._committed(name, table)
        return deleted

    def optimize(self) -> None:
        """Compact small fragments left by many small writes and prune old versions."""
        for name in self._schemas:
            table = self._table(name, create=False)
            if table is not None:
                table.optimize()

    # -------------------------------------------------------------- documents

    def put_documents(self, documents: Sequence[StoredDocument]) -> list[str]:
        """Store raw documents durably (one commit); a document already stored is kept.

        Returns:
            The ids, in input order.
        """
        rows = [d.to_row() for d in documents]
        # Same bytes, same id, same content: nothing to update, so insert-only.
        unique = list({r["id"]: r for r in rows}.values())
        self._merge(DOCUMENTS, "id", unique, update=False)
        if rows:
            logger.info("stored %d documents", len(unique))
        return [r["id"] for r in rows]

    def put_document(
        self,
        data: bytes | str,
        *,
        kind: DocumentKind,
        filename: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store one raw document and return its id (``document_id(data)``)."""
        doc = StoredDocument.new(data, kind=kind, filename=filename, content_type=content_type)
        return self.put_documents([doc])[0]

    def get_document(self, doc_id: str) -> StoredDocument | None:
        """The raw document ``doc_id``, or ``None``."""
        table = self._select(DOCUMENTS, _eq("id", doc_id), limit=1)
        if table is None or table.num_rows == 0:
            return None
        return StoredDocument.from_row(table.to_pylist()[0])

    def has_document(self, doc_id: str) -> bool:
        """Whether the raw document ``doc_id`` is stored."""
        return self._count(DOCUMENTS, _eq("id", doc_id)) > 0

    def _count(self, name: str, where: str | None = None) -> int:
        table = self._table(name, create=False)
        if table is None:
            return 0
        return int(table.count_rows(where))

    # -------------------------------------------------------------------- CVs

    def upsert_cvs(self, records: Sequence[CVRecord]) -> None:
        """Insert or replace CVs by ``cv_id``, all in one commit.

        Raises:
            ValueError: a record has a bad id or vectors of the wrong dimension.
        """
        self._check_dims(records)
        rows = [r.to_row() for r in records]
        # A key twice in one merge makes its outcome undefined; the last one wins here.
        self._merge(CVS, "cv_id", list({r["cv_id"]: r for r in rows}.values()))
        if rows:
            logger.info("upserted %d CVs", len(rows))

    def get_cv(self, cv_id: str) -> CVRecord | None:
        """The CV ``cv_id``, or ``None``."""
        table = self._select(CVS, _eq("cv_id", cv_id), limit=1)
        if table is None or table.num_rows == 0:
            return None
        return CVRecord.from_row(table.to_pylist()[0])

    def has_cv(self, cv_id: str) -> bool:
        """Whether the CV ``cv_id`` is stored."""
        return self._count(CVS, _eq("cv_id", cv_id)) > 0

    def list_cv_ids(self) -> list[str]:
        """All stored CV ids, sorted."""
        table = self._select(CVS, None, ["cv_id"])
        return [] if table is None else sorted(set(table.column("cv_id").to_pylist()))

    def count_cvs(self) -> int:
        """Number of stored CVs."""
        return self._count(CVS)

    def filenames(self, cv_ids: Sequence[str]) -> dict[str, str | None]:
        """Uploaded file names of the given CVs (one query); unknown ids are left out."""
        wanted = list(dict.fromkeys(cv_ids))
        if not wanted:
            return {}
        table = self._select(CVS, _in("cv_id", wanted), ["cv_id", "filename"])
        if table is None:
            return {}
        return dict(zip(table.column("cv_id").to_pylist(), table.column("filename").to_pylist(), strict=True))

    def read_cv_features(
        self,
        cv_ids: Sequence[str] | None = None,
        *,
        method: Literal["auto", "sql", "arrow"] = "auto",
    ) -> pa.Table:
        """The scoring columns (``FEATURE_COLUMNS``) of the given CVs, or of all of them.

        Args:
            cv_ids: which CVs; ``None`` for all. Unknown ids are skipped.
            method: how a subset is filtered: ``"sql"`` pushes a ``cv_id IN (...)``
                predicate into the scan, ``"arrow"`` scans the projected columns and
                filters in Arrow; ``"auto"`` takes ``"sql"`` for up to
                ``SQL_IN_MAX_SHARE`` of the table, else ``"arrow"`` (the faster of the two).

        Returns:
            A table with ``FEATURE_COLUMNS``, in no particular row order.

        Raises:
            ValueError: an id or ``method`` is malformed.
        """
        if method not in ("auto", "sql", "arrow"):
            raise ValueError(f"method must be 'auto', 'sql' or 'arrow', got {method!r}")
        columns = list(FEATURE_COLUMNS)
        if cv_ids is not None:
            wanted = list(dict.fromkeys(validate_id(i, "cv_id") for i in cv_ids))
            if not wanted:
                return self._schemas[CVS].empty_table().select(columns)
            if method == "auto":
                method = "sql" if len(wanted) <= SQL_IN_MAX_SHARE * self.count_cvs() else "arrow"
            if method == "sql":
                table = self._select(CVS, _in("cv_id", wanted), columns)
            else:
                table = self._select(CVS, None, columns)
                if table is not None:
                    table = table.filter(pc.is_in(table.column("cv_id"), value_set=pa.array(wanted, pa.string())))
        else:
            table = self._select(CVS, None, columns)
        if table is None:
            return self._schemas[CVS].empty_table().select(columns)
        return table

    # ------------------------------------------------------- lexical and search

    def lexical_stats(self, *, sample: int | None = None) -> LexicalStats:
        """Document frequencies and mean length of the stored CVs' lexical text (BM25's corpus).

        Computed once per table version and cached in this ``Store``: a JD scored twice
        against an unchanged pool gets the same idf, so its scores repeat exactly.

        Args:
            sample: count at most this many CVs (the first ones read); ``None`` for all.
                Document frequencies of a large pool are estimated well from a sample,
                for a fraction of the work.
        """
        table = self._table(CVS, create=False)
        if table is None:
            return LexicalStats(0, 0.0, {}, None)
        version = int(table.version)
        key = (version, sample)
        cached = self._lexical_cache.get(key)
        if cached is not None:
            return cached
        data = self._select(CVS, None, ["lex_terms", "lex_len"], limit=sample)
        n = data.num_rows if data is not None else 0
        if n == 0:
            stats = LexicalStats(0, 0.0, {}, version)
        else:
            counts = pc.value_counts(pc.list_flatten(data.column("lex_terms"))).flatten()
            df = dict(zip(counts[0].to_pylist(), counts[1].to_pylist(), strict=True))
            avg = float(pc.mean(data.column("lex_len")).as_py() or 0.0)
            stats = LexicalStats(n, avg, df, version)
        with self._lock:
            self._lexical_cache = {key: stats}
        return stats

    def ensure_lookup_indexes(self) -> list[str]:
        """B-tree indexes on ``cvs.cv_id`` and ``jds.jd_id``, where missing.

        Every upload asks whether its CV is stored, and reads, deletes and match jobs look
        CVs up by id: without an index each lookup scans the id column (5-8 ms at 100,000
        CVs here; under 1 ms with it). Rows written after the index are still found (Lance
        scans the unindexed tail). Returns the ``table.column`` names indexed by this call.
        """
        built = []
        for name, column in ((CVS, "cv_id"), (JDS, "jd_id")):
            table = self._table(name, create=False)
            if table is None or any(ix.columns[0] == column for ix in table.list_indices()):
                continue
            table.create_index(column, config=BTree(), replace=True)
            built.append(f"{name}.{column}")
        if built:
            logger.info("built lookup indexes on %s", ", ".join(built))
        return built

    def ensure_search_indexes(self, *, ann_min_rows: int, ann_columns: Sequence[str] = SEARCH_VECTOR_COLUMNS,
                              ann_index_type: str = "IVF_PQ", ann_partitions: int | None = None,
                              ann_sub_vectors: int | None = None, replace: bool = False) -> dict[str, str]:
        """Build the full-text index on the lexical text, and ANN indexes once the pool is large.

        The full-text index is always built (it is cheap); a vector column gets an ANN index
        only when the table holds at least ``ann_min_rows`` CVs, since below that an exact
        scan is fast and exact. Rows written after an index was built are still searched
        (Lance scans the unindexed tail), so call this again after large ingests.

        Args:
            ann_min_rows: the pool size from which vector columns are indexed.
            ann_columns: the vector columns to index.
            ann_index_type: ``IVF_PQ``, ``IVF_HNSW_SQ`` or ``IVF_FLAT`` (cosine distance).
            ann_partitions: IVF partitions; ``None`` lets LanceDB choose (about sqrt(rows)).
            ann_sub_vectors: PQ sub-vectors; ``None`` lets LanceDB choose.
            replace: rebuild indexes that exist.

        Returns:
            What each column got: ``"fts"``, an index type, or ``"exact"``.
        """
        table = self._table(CVS, create=False)
        if table is None:
            return {}
        self.ensure_lookup_indexes()
        existing = {ix.columns[0]: ix for ix in table.list_indices()}
        done: dict[str, str] = {}
        self._ensure_fulltext_index(table, existing, replace=replace)
        done[LEXICAL_TEXT_COLUMN] = "fts"
        rows = table.count_rows()
        for column in ann_columns:
            if rows < ann_min_rows:
                done[column] = "exact"
                continue
            if replace or column not in existing:
                config = _ann_config(ann_index_type, ann_partitions, ann_sub_vectors, _distance(column))
                table.create_index(column, config=config, replace=True)
                logger.info("built %s index on %s (%d rows)", ann_index_type, column, rows)
            done[column] = ann_index_type
        return done

    def ensure_fulltext_index(self) -> None:
        """The full-text index on the CVs' lexical text, where missing (one index listing)."""
        table = self._table(CVS, create=False)
        if table is not None:
            self._ensure_fulltext_index(table, {ix.columns[0]: ix for ix in table.list_indices()})

    @staticmethod
    def _ensure_fulltext_index(table: Any, existing: Mapping[str, Any], *, replace: bool = False) -> None:
        if replace or LEXICAL_TEXT_COLUMN not in existing:
            table.create_index(LEXICAL_TEXT_COLUMN, config=FTS(with_position=False), replace=True)
            logger.info("built full-text index on %s", LEXICAL_TEXT_COLUMN)

    def has_vector_index(self, column: str) -> bool:
        """Whether ``column`` of the CV table has a vector (ANN) index."""
        table = self._table(CVS, create=False)
        return table is not None and any(ix.columns[0] == column and ix.index_type != "FTS"
                                         for ix in table.list_indices())

    def search_cvs_text(self, query: str, limit: int) -> list[tuple[str, float]]:
        """Full-text (BM25) search of the CVs' lexical text: ``(cv_id, score)``, best first.

        Needs the full-text index (``ensure_search_indexes``); an empty query finds nothing.
        """
        table = self._table(CVS, create=False)
        terms = lexical_tokens(query)
        if table is None or not terms or limit <= 0:
            return []
        # The index's own tokenizer stems and drops stop words; our tokens keep the query
        # free of punctuation that its query parser would read as syntax.
        result = (table.search(" ".join(dict.fromkeys(terms)), query_type="fts", fts_columns=LEXICAL_TEXT_COLUMN)
                  .select(["cv_id", "_score"]).limit(limit).to_arrow())
        return list(zip(result.column("cv_id").to_pylist(), result.column("_score").to_pylist(), strict=True))

    def search_cvs_vector(self, column: str, vector: np.ndarray, limit: int, *, exact: bool | None = None,
                          nprobes: int = 20, refine_factor: int | None = 5) -> list[tuple[str, float]]:
        """Nearest CVs to ``vector`` on one vector column: ``(cv_id, similarity)``, best first.

        Args:
            column: one of ``VECTOR_COLUMNS`` (cosine) or ``SUM_VECTOR_COLUMN`` (dot product;
                pass the sum of the JD's section vectors).
            vector: a unit query vector of the store's dimension.
            limit: how many CVs.
            exact: ``True`` compares with every CV (exact; the column is held in memory,
                see ``_search_exact``), ``False`` uses the ANN index; ``None`` uses the
                index when the column has one.
            nprobes: IVF partitions probed by an ANN search.
            refine_factor: ANN candidates re-ranked with exact distances, per result.
        """
        if column not in (*VECTOR_COLUMNS, SUM_VECTOR_COLUMN):
            raise ValueError(f"column must be one of {(*VECTOR_COLUMNS, SUM_VECTOR_COLUMN)}, got {column!r}")
        table = self._table(CVS, create=False)
        if table is None or limit <= 0:
            return []
        if exact is None:
            exact = not self.has_vector_index(column)
        if exact:
            return self._search_exact(column, np.asarray(vector, dtype=np.float32), limit)
        query = (table.search(np.asarray(vector, dtype=np.float32), vector_column_name=column)
                 .distance_type(_distance(column)).nprobes(nprobes))
        if refine_factor:
            query = query.refine_factor(refine_factor)
        result = query.select(["cv_id", "_distance"]).limit(limit).to_arrow()
        dist = result.column("_distance").to_numpy(zero_copy_only=False)
        # LanceDB's cosine distance is 1 - cosine, its dot distance 1 - dot.
        return list(zip(result.column("cv_id").to_pylist(), (1.0 - dist).tolist(), strict=True))

    def _search_exact(self, column: str, vector: np.ndarray, limit: int) -> list[tuple[str, float]]:
        """Exact nearest CVs from the column held in memory (one matrix-vector product).

        A table scan through Lance reads and decodes the column on every query (~140 ms
        per 100,000 CVs here); the matrix costs 4 bytes per dimension per CV in memory,
        loaded once per table version, and a query ~8 ms per 100,000 CVs.
        """
        ids, matrix, norms = self._vector_matrix(column)
        if not len(ids):
            return []
        sims = matrix @ vector
        if _distance(column) == "cosine":
            sims = sims / np.maximum(norms * float(np.linalg.norm(vector)), 1e-12)
        k = min(limit, len(ids))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(ids) else np.arange(len(ids))
        # Best first; equal similarities by id, so the order never depends on row order.
        order = top[np.lexsort((ids[top], -sims[top]))]
        return list(zip(ids[order].tolist(), sims[order].astype(np.float64).tolist(), strict=True))

    def pool_arrays(self) -> PoolArrays:
        """The columns whole-pool retrieval reads for every CV, in memory (``PoolArrays``).

        Loaded in one scan and cached per table version: a write makes the next call load
        them again. About ``2 * 4 * dim`` bytes per CV (3 KB at 384 dimensions) plus its
        skills and occupations as integer codes.
        """
        table = self._table(CVS, create=False)
        version = int(table.version) if table is not None else -1
        cached = self._pool_cache
        if cached is not None and cached.version == version:
            return cached
        from cvmatch_ray.match.scoring import CodedLists  # the scorer imports this module

        columns = ["cv_id", *SEARCH_VECTOR_COLUMNS, "experience_months", "education_rank", "skills", "norm_titles"]
        dataset = None
        if table is not None:
            # One pinned dataset version for the scan and for later reads by position.
            dataset = table.to_lance()
            version = int(dataset.version)
            data = dataset.to_table(columns=columns)
        else:
            data = self._schemas[CVS].empty_table().select(columns)
        pool = PoolArrays(
            version=version,
            cv_ids=np.asarray(data.column("cv_id").to_pylist(), dtype=object),
            vectors={c: _matrix(data.column(c), self.dim) for c in SEARCH_VECTOR_COLUMNS},
            experience_months=data.column("experience_months").to_numpy().astype(np.int64),
            education_rank=data.column("education_rank").to_numpy().astype(np.int64),
            skills=CodedLists(data.column("skills")),
            norm_titles=CodedLists(data.column("norm_titles")),
            dataset=dataset,
        )
        with self._lock:
            self._pool_cache = pool
        return pool

    def _vector_matrix(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cv ids, [n, dim] float32 matrix, row norms)`` of a vector column, cached per table version."""
        if column in SEARCH_VECTOR_COLUMNS:
            pool = self.pool_arrays()
            return pool.cv_ids, pool.vectors[column], pool.norms(column)
        table = self._table(CVS, create=False)
        version = int(table.version) if table is not None else -1
        cached = self._vector_cache.get(column)
        if cached is not None and cached[0] == version:
            ids, matrix = cached[1], cached[2]
        else:
            data = self._select(CVS, None, ["cv_id", column]) if table is not None else None
            if data is None:
                ids, matrix = np.array([], dtype=object), np.zeros((0, self.dim), dtype=np.float32)
            else:
                ids, matrix = np.asarray(data.column("cv_id").to_pylist(), dtype=object), _matrix(data.column(column), self.dim)
            with self._lock:
                self._vector_cache[column] = (version, ids, matrix)
        return ids, matrix, np.linalg.norm(matrix, axis=1)

    def delete_cv(self, cv_id: str) -> bool:
        """Remove a CV from ``cvs``, its raw document and its match rows.

        Returns:
            Whether anything was stored under ``cv_id``.
        """
        where = _eq("cv_id", cv_id)
        removed = self._delete(CVS, where)
        removed += self._delete(DOCUMENTS, _eq("id", cv_id))
        matches = self._delete(MATCHES, where)
        logger.info("deleted CV %s (%d rows, %d match rows)", cv_id, removed, matches)
        return removed + matches > 0

    def _check_dims(self, records: Sequence[CVRecord] | Sequence[JDRecord]) -> None:
        for r in records:
            if r.vectors.shape[1] != self.dim:
                raise ValueError(f"vectors have dim {r.vectors.shape[1]}, store expects {self.dim}")

    # -------------------------------------------------------------------- JDs

    def upsert_jds(self, records: Sequence[JDRecord]) -> None:
        """Insert or replace JDs by ``jd_id``, all in one commit."""
        self._check_dims(records)
        rows = [r.to_row() for r in records]
        self._merge(JDS, "jd_id", list({r["jd_id"]: r for r in rows}.values()))
        if rows:
            logger.info("upserted %d JDs", len(rows))

    def get_jd(self, jd_id: str) -> JDRecord | None:
        """The JD ``jd_id``, or ``None``."""
        table = self._select(JDS, _eq("jd_id", jd_id), limit=1)
        if table is None or table.num_rows == 0:
            return None
        return JDRecord.from_row(table.to_pylist()[0])

    def get_jds(self, jd_ids: Sequence[str] | None = None) -> list[JDRecord]:
        """The given JDs (all of them when ``jd_ids`` is None), in one query, sorted by id."""
        if jd_ids is not None:
            wanted = list(dict.fromkeys(jd_ids))
            if not wanted:
                return []
            table = self._select(JDS, _in("jd_id", wanted))
        else:
            table = self._select(JDS, None)
        if table is None:
            return []
        return sorted((JDRecord.from_row(r) for r in table.to_pylist()), key=lambda r: r.jd_id)

    def has_jd(self, jd_id: str) -> bool:
        """Whether the JD ``jd_id`` is stored."""
        return self._count(JDS, _eq("jd_id", jd_id)) > 0

    def list_jd_ids(self) -> list[str]:
        """All stored JD ids, sorted."""
        table = self._select(JDS, None, ["jd_id"])
        return [] if table is None else sorted(set(table.column("jd_id").to_pylist()))

    def delete_jd(self, jd_id: str) -> bool:
        """Remove a JD from ``jds``, its raw document and the match rows scored against it."""
        removed = self._delete(JDS, _eq("jd_id", jd_id))
        removed += self._delete(DOCUMENTS, _eq("id", jd_id))
        matches = self._delete(MATCHES, _eq("jd_id", jd_id))
        logger.info("deleted JD %s (%d rows, %d match rows)", jd_id, removed, matches)
        return removed + matches > 0

    # ---------------------------------------------------------------- matches

    def write_matches(self, job_id: str, results: Sequence[MatchResult]) -> None:
        """Store a job's match results, one row per CV; writing a CV again replaces it."""
        validate_job_id(job_id)
        now = _now()
        rows: dict[str, dict[str, Any]] = {}
        for r in results:
            key = f"{job_id}:{validate_id(r.cv_id, 'cv_id')}"
            rows[key] = {
                "match_key": key,
                "job_id": job_id,
                "jd_id": validate_id(r.jd_id, "jd_id"),
                "cv_id": r.cv_id,
                "score": float(r.score),
                "result_json": r.model_dump_json(),
                "created_at": now,
            }
        self._merge(MATCHES, "match_key", list(rows.values()))
        if rows:
            logger.info("job %s: stored %d match results", job_id, len(rows))

    def read_matches(self, job_id: str, *, limit: int | None = None) -> list[MatchResult]:
        """A job's match results, best score first, ties by ``cv_id``.

        Args:
            job_id: the job.
            limit: at most this many results (the top ones); ``None`` for all.
        """
        table = self._select(MATCHES, _eq("job_id", job_id), ["cv_id", "score", "result_json"])
        if table is None or table.num_rows == 0:
            return []
        table = table.sort_by([("score", "descending"), ("cv_id", "ascending")])
        if limit is not None:
            table = table.slice(0, limit)
        return [MatchResult.model_validate_json(s) for s in table.column("result_json").to_pylist()]

    def count_matches(self, job_id: str) -> int:
        """Number of match rows stored for ``job_id``."""
        return self._count(MATCHES, _eq("job_id", job_id))
