"""One JD against the whole stored pool: candidates first, then the full scorer.

Scoring every stored CV in full costs time linear in the pool (reading every feature row).
Here the pool is first narrowed to candidates, and only those are scored by the full scorer
(``score_table``), so every returned score is the one ``rank_stored`` gives that CV:

- below ``ann_min_rows`` CVs, every CV gets its ``scoring.prescore`` (the score but for
  BM25) from a few columns held in memory. With BM25 at weight 0 (the default) that ranks
  the whole pool as the scorer does, and its best ``top_k`` (plus a margin for float
  rounding) are the candidates: the answer is the exhaustive ranking's top ``top_k``;
- otherwise ranked lists are fused by reciprocal rank fusion: a LanceDB full-text search
  of the JD's words over the CVs' blinded text, and the prescore ranking, or, past
  ``ann_min_rows``, ANN searches of the JD's vectors. A CV that no list ranks among its
  ``per_source`` best is not rescored: that trades recall for speed, and
  ``benchmarks/bench_retrieval.py`` measures it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cvmatch_ray.config import RetrievalSettings, ScoreWeights
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import features_of
from cvmatch_ray.match.scoring import TITLE, VECTOR_COLUMNS, JDFeatures, prescore, score_table
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.storage.records import SUM_VECTOR_COLUMN, PoolArrays
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)

# The ranked lists fused, by name: the full-text index, the in-memory prescore (exact
# mode), and, with ANN indexes, the vector columns searched.
FTS_SOURCE = "fts"
PRESCORE_SOURCE = "prescore"
# Runs one query's searches side by side (shared by all queries in the process).
_SEARCHES = ThreadPoolExecutor(max_workers=6, thread_name_prefix="cvmatch-search")


@dataclass
class Candidates:
    """CVs to score in full, best first; with their row positions in ``pool`` when they
    were ranked from it (their features are then read by position)."""

    cv_ids: list[str]
    pool_size: int
    exact: bool = False  # ranked by the full score (the prescore without BM25 weight)
    pool: PoolArrays | None = None
    positions: np.ndarray | None = None


@dataclass
class PoolMatch:
    """Results of one JD against the pool, with how long each step took (milliseconds)."""

    results: list[MatchResult]
    candidates: int
    pool: int = 0  # CVs stored
    exact: bool = False  # every CV was ranked by its score (no ANN, no BM25 weight)
    timings_ms: dict[str, float] = field(default_factory=dict)


def rrf_fuse(ranked_lists: dict[str, list[str]], k: int) -> list[str]:
    """Reciprocal rank fusion: ids by the sum of ``1 / (k + rank)`` over the lists.

    Ties are broken by id so the fused order is deterministic.
    """
    scores: dict[str, float] = {}
    for name in sorted(ranked_lists):
        for rank, doc_id in enumerate(ranked_lists[name], start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))


def retrieve_candidates(
    store: Store,
    jd: JDFeatures,
    query_text: str,
    settings: RetrievalSettings,
    timings: dict[str, float],
    weights: ScoreWeights | None = None,
    *,
    top_k: int = 100,
) -> Candidates:
    """The candidates for ``jd``, best first: ``top_k`` + ``settings.exact_margin`` from the
    prescore alone, else at most ``max(settings.candidates, top_k)`` fused.

    Below ``settings.ann_min_rows`` CVs every CV gets its ``scoring.prescore`` (the score
    without BM25) from the pool's columns held in memory. With BM25 weighing nothing, that
    ranks the whole pool as the scorer would, and its best ``top_k`` plus
    ``settings.exact_margin`` are the candidates. Otherwise two ranked lists are fused:
    the full-text search of the JD's words, and the vector side: the prescore ranking, or,
    past ``ann_min_rows``, ANN searches of the title and summed section vectors. The
    searches run at once (LanceDB and numpy release the GIL).
    """
    pool_size = store.count_cvs()
    exact = pool_size < settings.ann_min_rows

    def timed(name: str, search: Callable[[], list[str]]) -> tuple[str, list[str], float]:
        t = time.perf_counter()
        ids = search()
        return name, ids, (time.perf_counter() - t) * 1000

    weights = weights or ScoreWeights()
    if exact and weights.lexical == 0:
        # The prescore is the score (but for float rounding): its best CVs, with a margin
        # for that rounding, are the candidates; no other list can add one that belongs.
        t = time.perf_counter()
        pool, order = _prescore_order(store, jd, top_k + settings.exact_margin, weights)
        timings[PRESCORE_SOURCE] = (time.perf_counter() - t) * 1000
        return Candidates(pool.cv_ids[order].tolist(), len(pool), exact=True, pool=pool, positions=order)
    per_source = max(settings.per_source, top_k)
    # The full-text index, if no ingest built it yet (ANN indexes are the ingest's job:
    # without them vector search is exact, from memory).
    store.ensure_fulltext_index()
    searches: dict[str, Callable[[], list[str]]] = {
        FTS_SOURCE: lambda: [cv_id for cv_id, _ in store.search_cvs_text(query_text, per_source)],
    }
    if exact:
        searches[PRESCORE_SOURCE] = lambda: _prescore_ranking(store, jd, per_source, weights)
    else:
        queries = {VECTOR_COLUMNS[TITLE]: jd.vectors[TITLE], SUM_VECTOR_COLUMN: jd.vectors.sum(axis=0)}
        for column, vector in queries.items():
            searches[column] = functools.partial(_ann_ranking, store, column, vector, settings, per_source)
    lists: dict[str, list[str]] = {}
    for name, ids, ms in _SEARCHES.map(lambda item: timed(*item), searches.items()):
        lists[name] = ids
        timings[name] = ms
    t = time.perf_counter()
    fused = rrf_fuse(lists, settings.rrf_k)[: max(settings.candidates, top_k)]
    timings["fuse"] = (time.perf_counter() - t) * 1000
    return Candidates(fused, pool_size)


def _prescore_ranking(store: Store, jd: JDFeatures, limit: int, weights: ScoreWeights | None) -> list[str]:
    """The ``limit`` CVs with the best ``prescore``, best first (equal scores by id)."""
    pool, order = _prescore_order(store, jd, limit, weights)
    return pool.cv_ids[order].tolist()


def _prescore_order(
    store: Store, jd: JDFeatures, limit: int, weights: ScoreWeights | None
) -> tuple[PoolArrays, np.ndarray]:
    """The pool, and the row positions of its ``limit`` best CVs by ``prescore``, best first."""
    pool = store.pool_arrays()
    if not len(pool):
        return pool, np.zeros(0, dtype=np.int64)
    vectors = jd.vectors.astype(np.float32)
    scores = prescore(
        jd,
        title_dot=pool.vectors[VECTOR_COLUMNS[TITLE]] @ vectors[TITLE],
        sum_dot=pool.vectors[SUM_VECTOR_COLUMN] @ vectors.sum(axis=0),
        experience_months=pool.experience_months,
        education_rank=pool.education_rank,
        skills=pool.skills,
        norm_titles=pool.norm_titles,
        weights=weights,
        roles=pool.roles,
    )
    k = min(limit, len(pool))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(pool) else np.arange(len(pool))
    return pool, top[np.lexsort((pool.cv_ids[top], -scores[top]))]


def _ann_ranking(store: Store, column: str, vector: np.ndarray, settings: RetrievalSettings, limit: int) -> list[str]:
    hits = store.search_cvs_vector(
        column, vector, limit, exact=None,
        nprobes=settings.ann_nprobes, refine_factor=settings.ann_refine_factor or None,
    )
    return [cv_id for cv_id, _ in hits]


def match_pool(
    store: Store,
    jd_id: str,
    *,
    top_k: int = 100,
    weights: ScoreWeights | None = None,
    settings: RetrievalSettings | None = None,
) -> PoolMatch:
    """The best ``top_k`` stored CVs for a stored JD, through hybrid retrieval and exact rescoring.

    Args:
        store: the store; build its search indexes first (``Store.ensure_search_indexes``).
        jd_id: the JD.
        top_k: how many results.
        weights: score weights; ``None`` for the defaults.
        settings: retrieval settings; ``None`` for the defaults.

    Raises:
        UnknownDocument: no JD ``jd_id`` is stored.
    """
    settings = settings or RetrievalSettings()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    record = store.get_jd(jd_id)
    if record is None:
        raise UnknownDocument(f"no JD with id {jd_id!r}")
    jd = features_of(store, record, idf_sample=settings.lexical_idf_sample)
    timings["jd"] = (time.perf_counter() - start) * 1000
    found = retrieve_candidates(store, jd, record.text, settings, timings, weights, top_k=top_k)
    ids = found.cv_ids
    t = time.perf_counter()
    table = found.pool.features(found.positions) if found.pool is not None and ids else store.read_cv_features(ids)
    timings["read"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    batch = score_table(jd, table, weights)
    results = batch.top(top_k)
    timings["rescore"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - start) * 1000
    logger.debug("JD %s: %d candidates, %d results in %.1f ms", jd_id, len(ids), len(results), timings["total"])
    return PoolMatch(results=results, candidates=len(ids), pool=found.pool_size, exact=found.exact, timings_ms=timings)
