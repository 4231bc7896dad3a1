"""One JD against the whole stored pool: hybrid retrieval, then exact rescoring.

Scoring every stored CV costs time linear in the pool (reading every feature row). Here
the pool is first narrowed by LanceDB searches that use its indexes: a full-text (BM25)
search of the JD's words over the CVs' blinded text, and nearest-neighbour searches of the
JD's vectors against the CVs' (exact scans below ``ann_min_rows`` CVs, an ANN index
above). The ranked lists are fused by reciprocal rank fusion, and the best ``candidates``
are scored by the full scorer (``score_table``), so every returned score is the exact score
``rank_stored`` would give that CV. A CV that no search ranks among its ``per_source`` best
is not rescored: retrieval trades that recall for speed, and ``benchmarks/bench_retrieval.py``
measures it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from cvmatch_ray.config import RetrievalSettings, ScoreWeights
from cvmatch_ray.match.rank import UnknownDocument, features_of
from cvmatch_ray.match.scoring import TITLE, VECTOR_COLUMNS, JDFeatures, score_table
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.store import SUM_VECTOR_COLUMN, Store

logger = logging.getLogger(__name__)

# The sources searched, by name: the full-text index and the section vectors.
FTS_SOURCE = "fts"
# Runs one query's searches side by side (shared by all queries in the process).
_SEARCHES = ThreadPoolExecutor(max_workers=6, thread_name_prefix="cvmatch-search")


@dataclass
class PoolMatch:
    """Results of one JD against the pool, with how long each step took (milliseconds)."""

    results: list[MatchResult]
    candidates: int
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
    store: Store, jd: JDFeatures, query_text: str, settings: RetrievalSettings, timings: dict[str, float]
) -> list[str]:
    """The fused candidate ids for ``jd`` (at most ``settings.candidates``), best first.

    The three searches run at once (LanceDB and numpy release the GIL): the query takes
    as long as the slowest of them, not their sum.
    """
    exact = store.count_cvs() < settings.ann_min_rows

    def timed(name: str, search: Callable[[], list[tuple[str, float]]]) -> tuple[str, list[str], float]:
        t = time.perf_counter()
        ids = [cv_id for cv_id, _ in search()]
        return name, ids, (time.perf_counter() - t) * 1000

    searches: dict[str, Callable[[], list[tuple[str, float]]]] = {
        FTS_SOURCE: functools.partial(store.search_cvs_text, query_text, settings.per_source),
    }
    # Two vector searches cover the two vector components exactly: the title cosine, and
    # the semantic component (a dot product of summed section vectors, see store.SUM_VECTOR_COLUMN).
    # Skill and wording matches come from the full-text search.
    queries = {VECTOR_COLUMNS[TITLE]: jd.vectors[TITLE], SUM_VECTOR_COLUMN: jd.vectors.sum(axis=0)}
    for column, vector in queries.items():
        searches[column] = functools.partial(
            store.search_cvs_vector, column, vector, settings.per_source, exact=exact or None,
            nprobes=settings.ann_nprobes, refine_factor=settings.ann_refine_factor or None,
        )
    lists: dict[str, list[str]] = {}
    for name, ids, ms in _SEARCHES.map(lambda item: timed(*item), searches.items()):
        lists[name] = ids
        timings[name] = ms
    t = time.perf_counter()
    fused = rrf_fuse(lists, settings.rrf_k)[: settings.candidates]
    timings["fuse"] = (time.perf_counter() - t) * 1000
    return fused


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
    ids = retrieve_candidates(store, jd, record.text, settings, timings)
    t = time.perf_counter()
    table = store.read_cv_features(ids)
    timings["read"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    batch = score_table(jd, table, weights)
    results = batch.top(top_k)
    timings["rescore"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - start) * 1000
    logger.debug("JD %s: %d candidates, %d results in %.1f ms", jd_id, len(ids), len(results), timings["total"])
    return PoolMatch(results=results, candidates=len(ids), timings_ms=timings)
