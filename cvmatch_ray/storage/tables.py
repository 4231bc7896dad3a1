"""The LanceDB database of one deployment: the ``cvs``, ``jds`` and ``matches`` tables.

What the tables hold is in ``storage.records``; the pool's indexes and searches in
``storage.search``; what every table shares (upserts, compaction) in ``storage.lance``.
Writes are idempotent upserts (``merge_insert`` on the key) and batched: one commit per
call, never per row. The store works on any LanceDB URI: a local folder on a laptop,
``s3://``, ``gs://`` or ``az://`` on a cluster.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cvmatch_ray.ids import validate_id, validate_job_id
from cvmatch_ray.match.features import FEATURE_COLUMNS, LexicalStats
from cvmatch_ray.storage import erasure, lance
from cvmatch_ray.storage.records import (
    CVS,
    JDS,
    MATCH_ROW_COLUMNS,
    MATCHES,
    CVRecord,
    JDRecord,
    _now,
    cvs_schema,
    jds_schema,
    matches_schema,
    rows_to_table,
    schema_dim,
)
from cvmatch_ray.storage.pool import PoolArrays
from cvmatch_ray.storage.search import CVSearch

if TYPE_CHECKING:
    from cvmatch_ray.config import StoreSettings

logger = logging.getLogger(__name__)

# read_cv_features sends a `cv_id IN (...)` predicate while the ids are at most this share
# of the table, and past it scans the projected columns and filters in Arrow. The IN cost
# grows with the number of ids, the scan's with the table: on 10,000 CVs (2 CPUs) the two
# cross at about 1,000 ids (IN: 300 ids 38 ms, 3,000 ids 211 ms; scan: 80-95 ms either way).
# See benchmarks/bench_embed.py.
SQL_IN_MAX_SHARE = 0.1


class StoreSchemaError(RuntimeError):
    """An existing table does not have the schema this code expects (e.g. another dim)."""


def _eq(column: str, value: str) -> str:
    checked = validate_job_id(value) if column == "job_id" else validate_id(value, column)
    return f"{column} = '{checked}'"


def _in(column: str, values: Iterable[str]) -> str:
    quoted = ", ".join(f"'{validate_id(v, column)}'" for v in values)
    return f"{column} IN ({quoted})"


def _reopen(
    uri: str,
    dim: int | None,
    read_consistency_interval: timedelta | None,
    storage_options: dict[str, str] | None,
    compact_every: int | None,
    erase_grace: timedelta,
) -> Store:
    return Store(
        uri,
        dim=dim,
        read_consistency_interval=read_consistency_interval,
        storage_options=storage_options,
        compact_every=compact_every,
        erase_grace=erase_grace,
    )


class Store(CVSearch):
    """The LanceDB database of one cvmatch deployment.

    Cheap to create; tables are opened lazily and cached. A ``Store`` pickles as its
    arguments, so a Ray task or actor that receives one reconnects on its side.
    """

    def __init__(
        self,
        uri: str,
        *,
        dim: int | None = None,
        read_consistency_interval: timedelta | None = timedelta(0),
        storage_options: dict[str, str] | None = None,
        compact_every: int | None = lance.COMPACT_EVERY,
        erase_grace: timedelta = erasure.GRACE,
    ) -> None:
        """Connect to the database at ``uri``.

        Args:
            uri: LanceDB URI: a local folder, or ``s3://``, ``gs://``, ``az://``.
            dim: dimension of the section vectors (the encoder's ``dim``). Only needed to
                insist on one: otherwise it is read from the stored tables, or taken from
                the first records written to an empty database.
            read_consistency_interval: how stale a read may be. The default (zero)
                makes every read see what other processes committed, which the API needs
                to serve CVs that Ray workers just wrote; ``None`` never re-checks.
            storage_options: object-store options (credentials, endpoint, region...).
            compact_every: compact a table after this many commits to it through this
                store (``None``: never; ``optimize()`` then does it on demand).
            erase_grace: how long a write to the tables may take; a deleted CV's bytes
                are removed once the versions that hold them are this old
                (``storage.erasure``), so a delete takes at least this long.

        Raises:
            ValueError: ``dim`` is not positive.
        """
        if dim is not None and dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.uri = uri
        self._dim = dim
        self._read_consistency_interval = read_consistency_interval
        self._storage_options = storage_options
        self._compact_every = compact_every
        self._erase_grace = erase_grace
        # Deletes that arrive together share one erasure (its rewrite and its wait).
        self._eraser: erasure.GroupRunner[str, set[str]] = erasure.GroupRunner(
            self._erase_cvs, window=erasure.WINDOW_S
        )
        self._commits = lance.CommitCounter(compact_every)
        self._db = lance.connect(
            uri, read_consistency_interval=read_consistency_interval, storage_options=storage_options
        )
        self._tables: dict[str, Any] = {}
        self._lexical_cache: dict[tuple[int, int | None], LexicalStats] = {}
        # Per table version: the pool's searchable columns in memory (``pool_arrays``), and
        # any other vector column an exact search asked for.
        self._pool_cache: PoolArrays | None = None
        self._vector_cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        # Serve replicas call one Store from several threads; guard the table cache.
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _reopen,
            (
                self.uri, self._dim, self._read_consistency_interval, self._storage_options,
                self._compact_every, self._erase_grace,
            ),
        )

    @classmethod
    def open(cls, uri: str, options: StoreSettings, *, dim: int | None = None) -> Store:
        """The store at ``uri`` kept as ``options`` say (``Settings.store``)."""
        return cls(
            uri, dim=dim, storage_options=dict(options.storage_options) or None,
            compact_every=options.compact_every or None,
            erase_grace=timedelta(seconds=options.erase_grace_s),
        )

    def __repr__(self) -> str:
        return f"Store(uri={self.uri!r}, dim={self._dim})"

    @property
    def dim(self) -> int | None:
        """The section vectors' dimension: given, or read from a stored table; None while
        the database holds no CV or JD table and none was given."""
        if self._dim is None:
            for name in (CVS, JDS):
                if self._table(name, create=False) is not None:
                    break
        return self._dim

    # ----------------------------------------------------------------- tables

    def _schema(self, name: str) -> pa.Schema:
        """The schema ``name`` must have; vector columns of size 0 while the dim is unknown
        (only ever used then to shape an empty result)."""
        if name == MATCHES:
            return matches_schema()
        dim = self._dim or 0
        return cvs_schema(dim) if name == CVS else jds_schema(dim)

    def _empty(self, name: str, columns: Sequence[str]) -> pa.Table:
        return self._schema(name).empty_table().select(list(columns))

    def _table(self, name: str, *, create: bool) -> Any | None:
        """The table ``name``; created when ``create``, else ``None`` if it does not exist."""
        table = self._tables.get(name)
        if table is not None:
            return table
        with self._lock:
            table = self._tables.get(name)
            if table is not None:
                return table
            if name in self._db:
                table = self._db.open_table(name)
                if name == MATCHES and not set(matches_schema().names) <= set(table.schema.names):
                    table = self._replace_old_matches()
            elif create:
                if name != MATCHES and self._dim is None:
                    raise RuntimeError(f"table {name!r}: the vector dim must be known before creating it")
                # exist_ok: another process may have created it since; both then share it.
                table = self._db.create_table(name, schema=self._schema(name), exist_ok=True)
                logger.debug("table %s ready at %s", name, self.uri)
            else:
                return None
            if name != MATCHES and self._dim is None:
                self._dim = schema_dim(table.schema)
            self._check_schema(name, table.schema, self._schema(name))
            self._tables[name] = table
            return table

    def _replace_old_matches(self) -> Any:
        """A new, empty ``matches`` table in place of one in an older format (whole results
        as JSON, or fewer columns): job results are derived data, so they are dropped, not
        converted."""
        logger.warning("the stored match results are in an older format and are dropped; run the jobs again")
        self._db.drop_table(MATCHES, ignore_missing=True)
        return self._db.create_table(MATCHES, schema=matches_schema(), exist_ok=True)

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
        if rows:
            self._merge_table(name, key, rows_to_table(rows, self._schema(name)), update=update)

    def _merge_table(self, name: str, key: str, data: pa.Table, *, update: bool = True) -> None:
        """Upsert the Arrow table ``data`` (``name``'s schema) into ``name`` on ``key`` in one commit."""
        table = self._table(name, create=True)
        result = lance.upsert(table, key, data, update=update)
        logger.debug(
            "%s: merged %d rows (%d inserted, %d updated, %d attempts)",
            name,
            data.num_rows,
            result.num_inserted_rows,
            result.num_updated_rows,
            result.num_attempts,
        )
        self._committed(name, table)

    def _committed(self, name: str, table: Any) -> None:
        """Count a commit to ``name``; compact the table every ``compact_every`` commits."""
        if self._commits.committed(name):
            lance.compact(name, table)

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
        """Compact every table now (``lance.compact``), whatever its commit count."""
        for name in (CVS, JDS, MATCHES):
            table = self._table(name, create=False)
            if table is not None:
                lance.compact(name, table)

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
                return self._empty(CVS, columns)
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
            return self._empty(CVS, columns)
        return table

    def delete_cv(self, cv_id: str) -> bool:
        """Erase a CV: its row in ``cvs`` and its match rows, and every byte of them on disk.

        Returns once the bytes are gone (``storage.erasure``): it takes at least the
        store's ``erase_grace``; deletes that arrive together share one erasure.

        Returns:
            Whether anything was stored under ``cv_id``.

        Raises:
            erasure.ErasureError: the rows are deleted but their bytes may remain;
                deleting again finishes the job.
        """
        return validate_id(cv_id, "cv_id") in self._eraser.submit([cv_id])

    def _erase_cvs(self, cv_ids: list[str]) -> set[str]:
        """Erase the CVs ``cv_ids`` from every table that holds them; the ids that were stored."""
        wanted = list(dict.fromkeys(cv_ids))
        where = _in("cv_id", wanted)
        targets, found = [], set()
        for name in (CVS, MATCHES):
            table = self._table(name, create=False)
            if table is None:
                continue
            rows = self._select(name, where, ["cv_id"])
            found.update(rows.column("cv_id").to_pylist() if rows is not None else [])
            reindex = self._rebuild_fulltext_index if name == CVS and self._has_fulltext_index(table) else None
            targets.append(erasure.Target(name, table, where, reindex))
        counts = erasure.erase(targets, grace=self._erase_grace, storage_options=self._storage_options)
        logger.info("erased %d CVs (rows per table: %s)", len(wanted), dict(zip((t.name for t in targets), counts, strict=True)))
        return found

    def _check_dims(self, records: Sequence[CVRecord] | Sequence[JDRecord]) -> None:
        """Records must have the store's dim; an empty database takes the first record's."""
        if not records:
            return
        dim = self.dim
        if dim is None:
            dim = records[0].vectors.shape[1]
        for r in records:
            if r.vectors.shape[1] != dim:
                raise ValueError(f"vectors have dim {r.vectors.shape[1]}, store expects {dim}"
                                 " (was the database written with another embedding model?)")
        with self._lock:
            if self._dim is None:
                self._dim = dim

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
        """Remove a JD from ``jds`` and the match rows scored against it."""
        removed = self._delete(JDS, _eq("jd_id", jd_id))
        matches = self._delete(MATCHES, _eq("jd_id", jd_id))
        logger.info("deleted JD %s (%d rows, %d match rows)", jd_id, removed, matches)
        return removed + matches > 0

    # ---------------------------------------------------------------- matches

    def write_match_rows(self, job_id: str, rows: pa.Table) -> None:
        """Store a job's scored rows (``records.MATCH_ROW_COLUMNS``, what
        ``match.results.match_rows`` gives, and optionally ``chunk``) in one commit; a CV
        written again replaces its row."""
        table = self._match_table(job_id, rows)
        if table is not None:
            self._merge_table(MATCHES, "match_key", table)
            logger.info("job %s: stored %d match results", job_id, table.num_rows)

    def append_match_rows(self, job_id: str, rows: pa.Table) -> None:
        """:meth:`write_match_rows` for rows the job has not stored yet (a job's driver knows:
        see :meth:`delete_match_chunks`): an append, whose cost does not grow with the table."""
        table = self._match_table(job_id, rows)
        if table is not None:
            self._table(MATCHES, create=True).add(table)
            self._committed(MATCHES, self._table(MATCHES, create=True))
            logger.info("job %s: stored %d match results", job_id, table.num_rows)

    def delete_match_chunks(self, job_id: str, chunks: Sequence[int]) -> int:
        """Delete the rows a job's ``chunks`` wrote (a driver started again redoes them)."""
        if not chunks:
            return 0
        listed = ", ".join(str(int(c)) for c in chunks)
        return self._delete(MATCHES, f"{_eq('job_id', job_id)} AND chunk IN ({listed})")

    def _match_table(self, job_id: str, rows: pa.Table) -> pa.Table | None:
        """``rows`` as ``matches`` rows of ``job_id`` (ids checked); None when empty."""
        validate_job_id(job_id)
        if rows.num_rows == 0:
            return None
        cv_ids = rows.column("cv_id")
        for name in ("cv_id", "jd_id"):
            for value in pc.unique(rows.column(name)).to_pylist():
                validate_id(value, name)
        if len(pc.unique(cv_ids)) != rows.num_rows:
            raise ValueError(f"job {job_id}: a CV appears twice in one write")
        n = rows.num_rows
        columns = {
            "match_key": pc.binary_join_element_wise(pa.array([job_id] * n, pa.string()), cv_ids, ":"),
            "job_id": pa.array([job_id] * n, pa.string()),
            **{name: rows.column(name) for name in MATCH_ROW_COLUMNS},
            "chunk": rows.column("chunk") if "chunk" in rows.column_names else pa.array([-1] * n, pa.int32()),
            "created_at": pa.array([_now()] * n),
        }
        schema = self._schema(MATCHES)
        return pa.Table.from_arrays([pc.cast(columns[f.name], f.type) for f in schema], schema=schema)

    def read_match_rows(self, job_id: str, *, limit: int | None = None) -> pa.Table:
        """A job's stored rows (``records.MATCH_ROW_COLUMNS``), best score first, ties by
        ``cv_id``; at most ``limit`` (the top ones), all when ``None``."""
        table = self._select(MATCHES, _eq("job_id", job_id), list(MATCH_ROW_COLUMNS))
        if table is None:
            return self._empty(MATCHES, MATCH_ROW_COLUMNS)
        table = table.sort_by([("score", "descending"), ("cv_id", "ascending")])
        return table if limit is None else table.slice(0, limit)

    def count_matches(self, job_id: str) -> int:
        """Number of match rows stored for ``job_id``."""
        return self._count(MATCHES, _eq("job_id", job_id))
