"""One JD against the whole stored pool: a shortlist first, then the full scorer.

Scoring every stored CV in full costs time linear in the pool (reading every feature row).
Here the pool is narrowed to a shortlist from what is held in memory of every CV
(``Store.pool_arrays``), and only the shortlist is scored by the full scorer
(``score_table``), so every returned score is the one ``rank_stored`` gives that CV:

- below ``ann_min_rows`` CVs, ``shortlist.exact_shortlist`` bounds every CV's prescore
  (the score but for BM25) and keeps every CV that can reach the ``top_k``-th best: with
  BM25 at weight 0 (the default) the answer is the exhaustive ranking's top ``top_k``;
- from ``ann_min_rows`` CVs, ``shortlist.approximate_shortlist`` ranks the pool by a
  sketch of its vectors and exact skills and years, re-ranks ``ann_candidates`` of them
  with their full vectors and roles, and scores the best ``top_k + ann_margin`` in full:
  faster, and a CV can be missed (``benchmarks/bench_retrieval.py`` measures recall);
- with BM25 weighed, two ranked lists are fused by reciprocal rank fusion: a LanceDB
  full-text search of the JD's words over the CVs' blinded text, and the prescore
  ranking (either of the above). A CV that no list ranks among its ``per_source`` best is
  not rescored: that trades recall for speed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cvmatch_ray.config import RetrievalSettings, ScoreWeights
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.rank import features_of
from cvmatch_ray.match.scoring import JDFeatures, score_table
from cvmatch_ray.match.shortlist import Shortlist, approximate_shortlist, exact_shortlist
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.storage.pool import PoolArrays
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)

# The ranked lists fused, by name: the full-text index and the in-memory prescore.
FTS_SOURCE = "fts"
PRESCORE_SOURCE = "prescore"
# Runs one query's searches side by side (shared by all queries in the process).
_SEARCHES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cvmatch-search")


@dataclass
class Candidates:
    """CVs to score in full, best first; with their row positions in ``pool`` when they
    were ranked from it (their features are then read by position)."""

    cv_ids: list[str]
    pool_size: int
    exact: bool = False  # holds the exhaustive ranking's top k (exact shortlist, no BM25 weight)
    pool: PoolArrays | None = None
    positions: np.ndarray | None = None
    stages: dict[str, int] = field(default_factory=dict)  # CVs kept at each shortlist stage


@dataclass
class PoolMatch:
    """Results of one JD against the pool, with how long each step took (milliseconds)."""

    results: list[MatchResult]
    candidates: int
    pool: int = 0  # CVs stored
    exact: bool = False  # the exhaustive ranking's top k (exact shortlist, no BM25 weight)
    timings_ms: dict[str, float] = field(default_factory=dict)
    stages: dict[str, int] = field(default_factory=dict)  # CVs kept at each shortlist stage


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
    """The candidates for ``jd``: a shortlist of the pool by prescore (module docstring),
    else, with BM25 weighed, at most ``max(settings.candidates, top_k)`` fused, best first.

    The full-text search and the prescore ranking run at once (LanceDB and numpy release
    the GIL).
    """
    pool_size = store.count_cvs()
    exact = pool_size < settings.ann_min_rows
    weights = weights or ScoreWeights()

    def timed(name: str, search: Callable[[], list[str]]) -> tuple[str, list[str], float]:
        t = time.perf_counter()
        ids = search()
        return name, ids, (time.perf_counter() - t) * 1000

    if weights.lexical == 0:
        # The prescore is the score: the shortlist alone is the candidates.
        t = time.perf_counter()
        pool = store.pool_arrays()
        found = _shortlist(pool, jd, top_k, weights, settings, exact=exact)
        timings[PRESCORE_SOURCE] = (time.perf_counter() - t) * 1000
        timings.update({f"{PRESCORE_SOURCE}.{step}": ms for step, ms in found.timings_ms.items()})
        return Candidates(pool.ids(found.positions), len(pool), exact=exact, pool=pool, positions=found.positions,
                          stages=found.stages)
    per_source = max(settings.per_source, top_k)
    # The full-text index, if no ingest built it yet.
    store.ensure_fulltext_index()
    searches: dict[str, Callable[[], list[str]]] = {
        FTS_SOURCE: lambda: [cv_id for cv_id, _ in store.search_cvs_text(query_text, per_source)],
        PRESCORE_SOURCE: lambda: _prescore_ranking(store, jd, per_source, weights, settings, exact=exact),
    }
    lists: dict[str, list[str]] = {}
    for name, ids, ms in _SEARCHES.map(lambda item: timed(*item), searches.items()):
        lists[name] = ids
        timings[name] = ms
    t = time.perf_counter()
    fused = rrf_fuse(lists, settings.rrf_k)[: max(settings.candidates, top_k)]
    timings["fuse"] = (time.perf_counter() - t) * 1000
    return Candidates(fused, pool_size)


def _shortlist(pool: PoolArrays, jd: JDFeatures, k: int, weights: ScoreWeights, settings: RetrievalSettings, *,
               exact: bool, ordered: bool = False) -> Shortlist:
    if exact:
        return exact_shortlist(jd, pool, k, weights, ordered=ordered)
    return approximate_shortlist(jd, pool, k, weights, candidates=settings.ann_candidates, margin=settings.ann_margin)


def _prescore_ranking(store: Store, jd: JDFeatures, limit: int, weights: ScoreWeights | None,
                      settings: RetrievalSettings | None = None, *, exact: bool = True) -> list[str]:
    """The ``limit`` CVs with the best ``prescore``, best first (equal prescores by id);
    past ``ann_min_rows`` (``exact=False``) as the approximate shortlist finds them."""
    pool = store.pool_arrays()
    found = _shortlist(pool, jd, limit, weights or ScoreWeights(), settings or RetrievalSettings(), exact=exact,
                       ordered=True)  # a ranked list: its order counts in the fusion
    return pool.ids(found.positions[:limit])


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
    return PoolMatch(results=results, candidates=len(ids), pool=found.pool_size, exact=found.exact, timings_ms=timings,
                     stages=found.stages)
