"""The search side of the ``Store``: lookup, full-text and vector indexes, searches over
the CV pool, the pool held in memory for retrieval, and the pool's BM25 statistics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import FTS, BTree, HnswSq, IvfFlat, IvfPq

from cvmatch_ray.match.features import (
    LEXICAL_TEXT_COLUMN,
    VECTOR_COLUMNS,
    LexicalStats,
    lexical_tokens,
)
from cvmatch_ray.storage.pool import POOL_COLUMNS, PoolArrays, load_pool
from cvmatch_ray.storage.records import (
    CVS,
    JDS,
    SEARCH_VECTOR_COLUMNS,
    SUM_VECTOR_COLUMN,
    vector_matrix,
)

logger = logging.getLogger(__name__)


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


class CVSearch:
    """Indexes and searches over the ``cvs`` table, mixed into ``Store``.

    Uses the store's table access (``_table``, ``_select``, ``_empty``), its lock and its
    per-version caches; kept apart so each module stays one concern.
    """

    _lock: threading.Lock
    _lexical_cache: dict[tuple[int, int | None], LexicalStats]
    _pool_cache: PoolArrays | None
    _vector_cache: dict[str, tuple[int, np.ndarray, np.ndarray]]

    if TYPE_CHECKING:
        @property
        def dim(self) -> int | None: ...
        def _table(self, name: str, *, create: bool) -> Any | None: ...
        def _select(self, name: str, where: str | None, columns: Sequence[str] | None = None,
                    limit: int | None = None) -> pa.Table | None: ...
        def _empty(self, name: str, columns: Sequence[str]) -> pa.Table: ...

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

    def ensure_search_indexes(self, *, ann_min_rows: int | None = None, ann_columns: Sequence[str] = SEARCH_VECTOR_COLUMNS,
                              ann_index_type: str = "IVF_PQ", ann_partitions: int | None = None,
                              ann_sub_vectors: int | None = None, replace: bool = False) -> dict[str, str]:
        """Build the full-text index on the lexical text, and ANN indexes once the pool is large.

        The full-text index is always built (it is cheap); a vector column gets an ANN index
        only when asked and the table holds at least ``ann_min_rows`` CVs, for
        ``search_cvs_vector`` (whole-pool matching does not read them: it holds the vectors
        in memory, ``match.shortlist``). Rows written after an index was built are still
        searched (Lance scans the unindexed tail), so call this again after large ingests.

        Args:
            ann_min_rows: the pool size from which vector columns are indexed; ``None``: never.
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
            if ann_min_rows is None or rows < ann_min_rows:
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
    def _has_fulltext_index(table: Any) -> bool:
        return any(ix.columns[0] == LEXICAL_TEXT_COLUMN for ix in table.list_indices())

    def _rebuild_fulltext_index(self, table: Any) -> None:
        """Build the full-text index again from the rows there are (after an erasure)."""
        self._ensure_fulltext_index(table, {}, replace=True)

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
        """The columns whole-pool retrieval reads for every CV, in memory (``storage.pool``).

        Loaded in one scan, a batch at a time, and cached per table version: a write makes
        the next call load them again. About 0.8 KB per CV at 384 dimensions for the int8
        vectors, plus years, education, and skills, occupations and roles as codes and lists.
        """
        table = self._table(CVS, create=False)
        version = int(table.version) if table is not None else -1
        cached = self._pool_cache
        if cached is not None and cached.version == version:
            return cached
        dataset = None
        if table is not None:
            # One pinned dataset version for the scan and for later reads by position.
            dataset = table.to_lance()
            version = int(dataset.version)
        pool = load_pool(dataset, version, self._empty(CVS, POOL_COLUMNS), self.dim or 0)
        with self._lock:
            self._pool_cache = pool
        return pool

    def _vector_matrix(self, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(cv ids, [n, dim] float32 matrix, row norms)`` of a vector column, cached per table
        version (loaded on the first exact search of that column: whole-pool matching reads
        the pool's int8 codes instead, ``pool_arrays``)."""
        table = self._table(CVS, create=False)
        version = int(table.version) if table is not None else -1
        cached = self._vector_cache.get(column)
        if cached is not None and cached[0] == version:
            ids, matrix = cached[1], cached[2]
        else:
            data = self._select(CVS, None, ["cv_id", column]) if table is not None else None
            if data is None:
                ids, matrix = np.array([], dtype=object), np.zeros((0, self.dim or 0), dtype=np.float32)
            else:
                ids, matrix = np.asarray(data.column("cv_id").to_pylist(), dtype=object), vector_matrix(data.column(column))
            with self._lock:
                self._vector_cache[column] = (version, ids, matrix)
        return ids, matrix, np.linalg.norm(matrix, axis=1)
