"""Rank stored CVs against a stored JD, and stored JDs against a stored CV, in this process.

Both directions score a pair with the same features (``jd_features`` and the CV's stored
feature row), so a (JD, CV) pair gets the same score whichever way it is ranked. The Ray
path chunks the same calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from cvmatch_ray.config import RetrievalSettings, ScoreWeights
from cvmatch_ray.errors import UnknownDocument
from cvmatch_ray.match.results import stored_batch
from cvmatch_ray.match.scoring import JDFeatures, ScoredBatch, score_table
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.storage.records import JDRecord
from cvmatch_ray.storage.tables import Store

#: CVs counted for BM25's document frequencies when the caller does not say (the setting's default).
_IDF_SAMPLE = RetrievalSettings.model_fields["lexical_idf_sample"].default


def features_of(store: Store, record: JDRecord, *, idf_sample: int = _IDF_SAMPLE) -> JDFeatures:
    """The scoring features of a loaded JD record (idf from the stored CVs, see ``jd_features``)."""
    return JDFeatures.from_profile(
        record.jd_id, record.profile, record.vectors, text=record.text,
        lexical_stats=store.lexical_stats(sample=idf_sample),
    )


def jd_features(store: Store, jd_id: str, *, idf_sample: int = _IDF_SAMPLE) -> JDFeatures:
    """Load a stored JD's scoring features, or raise ``UnknownDocument``.

    The lexical component's idf comes from the stored CVs (cached per table version), so
    the features change when the pool does, and are equal for equal pools.
    """
    record = store.get_jd(jd_id)
    if record is None:
        raise UnknownDocument(f"no JD with id {jd_id!r}")
    return features_of(store, record, idf_sample=idf_sample)


def score_stored(
    store: Store,
    jd: JDFeatures,
    cv_ids: Sequence[str] | None = None,
    weights: ScoreWeights | None = None,
) -> ScoredBatch:
    """Score ``jd`` against the given stored CVs (all of them when ``cv_ids`` is None)."""
    return score_table(jd, store.read_cv_features(cv_ids), weights)


def rank_stored(
    store: Store,
    jd_id: str,
    cv_ids: Sequence[str] | None = None,
    *,
    top_k: int | None = None,
    weights: ScoreWeights | None = None,
    idf_sample: int = _IDF_SAMPLE,
) -> list[MatchResult]:
    """Ranked results of a stored JD against stored CVs, best first (ties by cv_id)."""
    return score_stored(store, jd_features(store, jd_id, idf_sample=idf_sample), cv_ids, weights).top(top_k)


def job_results(
    store: Store, job_id: str, *, limit: int | None = None, idf_sample: int = _IDF_SAMPLE
) -> list[MatchResult]:
    """A match job's stored results, best first (ties by cv_id), at most ``limit``.

    Scores and breakdowns are as the job stored them; evidence and explanations are built
    now, for these results only, from the CVs' stored lines (``match.results``).
    """
    rows = store.read_match_rows(job_id, limit=limit)
    if rows.num_rows == 0:
        return []
    jd = jd_features(store, rows.column("jd_id")[0].as_py(), idf_sample=idf_sample)
    cvs = store.read_cv_features(rows.column("cv_id").to_pylist())
    return stored_batch(jd, rows, cvs).results()


def rank_jobs(
    store: Store,
    cv_id: str,
    jd_ids: Sequence[str] | None = None,
    top_k: int | None = None,
    weights: ScoreWeights | None = None,
    idf_sample: int = _IDF_SAMPLE,
) -> list[MatchResult]:
    """The best stored JDs for a stored CV, best first (ties by jd_id).

    Each (JD, CV) pair is scored exactly as ``rank_stored`` scores it (same JD features,
    same CV feature row, same scorer), so both directions agree to the last digit.

    Args:
        store: the store holding the CV and the JDs.
        cv_id: the CV.
        jd_ids: the JDs to rank; ``None`` for every stored JD. Unknown ids are skipped.
        top_k: at most this many results; ``None`` for all.
        weights: score weights; ``None`` for the defaults.
        idf_sample: CVs counted for BM25's document frequencies (``RetrievalSettings``).

    Raises:
        UnknownDocument: no CV ``cv_id`` is stored.
        ValueError: an id is malformed.
    """
    row = store.read_cv_features([cv_id])
    if row.num_rows == 0:
        raise UnknownDocument(f"no CV with id {cv_id!r}")
    results = [score_table(features_of(store, rec, idf_sample=idf_sample), row, weights).result(0)
               for rec in store.get_jds(jd_ids)]
    results.sort(key=lambda r: (-r.score, r.jd_id))
    return results if top_k is None else results[:top_k]
