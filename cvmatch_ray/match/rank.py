"""Rank stored CVs against a stored JD, in this process (the Ray path chunks the same calls)."""

from __future__ import annotations

from collections.abc import Sequence

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match.scoring import JDFeatures, ScoredBatch, score_table
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.store import Store


class UnknownDocument(LookupError):
    """A JD or CV id that is not in the store."""


def jd_features(store: Store, jd_id: str) -> JDFeatures:
    """Load a stored JD's scoring features, or raise ``UnknownDocument``."""
    record = store.get_jd(jd_id)
    if record is None:
        raise UnknownDocument(f"no JD with id {jd_id!r}")
    return JDFeatures.from_profile(record.jd_id, record.profile, record.vectors)


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
) -> list[MatchResult]:
    """Ranked results of a stored JD against stored CVs, best first (ties by cv_id)."""
    return score_stored(store, jd_features(store, jd_id), cv_ids, weights).top(top_k)
