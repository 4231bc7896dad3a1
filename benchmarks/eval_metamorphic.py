"""Metamorphic checks of the cvmatch scorer on real resumes and postings (``eval_matching.py``).

Each check edits a real resume (or swaps it), runs the edited text through the project's own
steps (the configured standardizer, features, section embeddings, ``CVRecord.to_row``) and scores it
with ``match.scoring.score_table`` against the same posting features as the original:

1. removing a required skill's mentions never raises the score;
2. adding a matching role (a dated entry with the posting's title and required skills) never
   lowers it;
3. swapping in a resume of another, unrelated family lowers it.

The original is run through the same steps from its stored text, so an edit is the only
difference between the two scores.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

try:  # run as a script: benchmarks/ is on sys.path
    import eval_family as ef
    import eval_lib as el
except ImportError:  # imported as part of the repository
    from benchmarks import eval_family as ef
    from benchmarks import eval_lib as el

logger = logging.getLogger("eval_metamorphic")

#: Checks 1 and 2 each run at most this many (posting, resume) pairs through the pipeline.
DEFAULT_PAIRS = 40
#: A score change below this many points is float noise, not a violation.
TOLERANCE = 0.0


@dataclass
class CheckResult:
    """One check's outcome: pairs run, pairs that held, and the score changes (edited - original)."""

    name: str
    rule: str
    deltas: list[float] = field(default_factory=list)
    passed: int = 0
    notes: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.deltas)

    @property
    def rate(self) -> float:
        return self.passed / self.n if self.n else float("nan")

    def note(self, key: str) -> None:
        self.notes[key] = self.notes.get(key, 0) + 1


def _hash_order(key: str, ids: Sequence[str]) -> list[str]:
    """``ids`` in an order fixed by a hash of (key, id): a label-blind, reproducible pick."""
    return sorted(ids, key=lambda i: hashlib.sha1(f"{key}:{i}".encode()).digest())


class _Pipeline:
    """Edited resume text -> stored feature row, through the project's own steps.

    Rows are cached by text, so several weightings of one run share the pipeline work.
    """

    def __init__(self, cvpool) -> None:
        self.cvpool = cvpool
        self._cache: dict[str, object] = {}

    def features(self, texts: Sequence[str]):
        from cvmatch_ray.ids import document_id
        from cvmatch_ray.match.features import CVFeatures
        from cvmatch_ray.process import (
            Extracted,
            Failed,
            embed_batch,
            features_batch,
            standardize_batch,
        )

        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        items = [Extracted(document_id(t.encode("utf-8")), "cv", None, t, [], "edit") for t in todo]
        out = embed_batch(features_batch(standardize_batch(items, self.cvpool.standardizer)), self.cvpool.embedder)
        for t, o in zip(todo, out, strict=True):
            self._cache[t] = None if isinstance(o, Failed) else CVFeatures.from_row(o.record.to_row())
        return [self._cache[t] for t in texts]


_PIPELINES: dict[int, _Pipeline] = {}


def run_checks(cvpool, pool: el.CVPool, queries: Sequence[el.Query], weights, *,
               pairs: int = DEFAULT_PAIRS) -> list[CheckResult]:
    """Run the three checks for the cvmatch ranker (``eval_matching.CvmatchPool``) with ``weights``."""
    from cvmatch_ray.match.features import features_table
    from cvmatch_ray.match.scoring import score_table

    cvpool.prepare_jds([q.text for q in queries])
    pipe = _PIPELINES.setdefault(id(cvpool), _Pipeline(cvpool))
    doc_of = dict(zip(pool.ids, cvpool.doc_ids, strict=True))
    cat_of = dict(zip(pool.ids, pool.categories, strict=True))
    records: dict[str, object] = {}

    def record(cv_id: str):
        if cv_id not in records:
            records[cv_id] = cvpool.store.get_cv(doc_of[cv_id]) if doc_of[cv_id] else None
        return records[cv_id]

    def score_pair(jd, a, b) -> tuple[float, float]:
        batch = score_table(jd, features_table([a, b]), weights)
        return float(batch.scores[0]), float(batch.scores[1])

    remove = CheckResult("remove a required skill", "score(edited) <= score(original)")
    add = CheckResult("add a matching role", "score(edited) >= score(original)")
    swap = CheckResult("swap in another family's resume", "score(other family) < score(same family)")
    todo_remove: list[tuple[object, str, str, str]] = []
    todo_add: list[tuple[object, str, str, str]] = []
    for q in queries:
        jd = cvpool._jds.get(q.text)  # the harness's own cache
        if jd is None:
            continue
        same = [i for i in pool.ids if cat_of[i] == q.category]
        for cv_id in _hash_order(q.id, same):
            rec = record(cv_id)
            if rec is None:
                continue
            have = [s for s in jd.required if s in set(rec.profile.skill_names)]
            if have and len(todo_remove) < pairs:
                mention = next(m for m in rec.profile.skills if m.name == have[0])
                edited = ef.remove_mentions(rec.text, [*mention.mentions, mention.name])
                todo_remove.append((jd, rec.text, edited, have[0]))
                break
        for cv_id in _hash_order(q.id + ":add", same)[:1]:
            rec = record(cv_id)
            if rec is not None and len(todo_add) < pairs:
                title = q.title or (jd.title or "")
                edited = ef.add_role(rec.text, title=title, skills=list(jd.required[:6]))
                todo_add.append((jd, rec.text, edited, ""))
        # Check 3 needs no new pipeline run: both resumes are stored.
        near = el.CATEGORY_SIBLINGS.get(q.category, frozenset()) | {q.category}
        others = [i for i in pool.ids if cat_of[i] not in near]
        scores = dict(zip(pool.ids, cvpool.scores(q.text, weights), strict=True))
        for cv_id in same:
            other = _hash_order(f"{q.id}:{cv_id}", others)[0]
            if doc_of[cv_id] is None or doc_of[other] is None:
                continue
            swap.deltas.append(scores[other] - scores[cv_id])
            swap.passed += scores[other] < scores[cv_id]
    for check, todo, ok in ((remove, todo_remove, lambda d: d <= TOLERANCE), (add, todo_add, lambda d: d >= -TOLERANCE)):
        feats = pipe.features([t for _, orig, edit, _ in todo for t in (orig, edit)])
        for j, (jd, _, _, skill) in enumerate(todo):
            a, b = feats[2 * j], feats[2 * j + 1]
            if a is None or b is None:
                check.note("not ingested")
                continue
            if skill and skill in b.skills:
                check.note("skill still found after removal")
            s_orig, s_edit = score_pair(jd, a, b)
            check.deltas.append(s_edit - s_orig)
            check.passed += ok(s_edit - s_orig)
    for c in (remove, add, swap):
        logger.info("metamorphic %s: %d/%d held", c.name, c.passed, c.n)
    return [remove, add, swap]


def render(results: Sequence[CheckResult], ranker: str) -> list[str]:
    """The markdown lines of the checks' table."""
    lines = [
        "| check | rule | pairs | held | pass rate | mean Δ | worst Δ | notes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in results:
        d = np.asarray(c.deltas, dtype=np.float64)
        # The worst case is the largest rise for checks 1 and 3, the largest drop for check 2.
        worst = float("nan") if not d.size else d.min() if c is results[1] else d.max()
        notes = ", ".join(f"{k}: {v}" for k, v in sorted(c.notes.items())) or "-"
        lines.append(
            f"| {c.name} | {c.rule} | {c.n} | {c.passed} | {c.rate:.1%} | "
            f"{d.mean() if d.size else float('nan'):+.2f} | {worst:+.2f} | {notes} |"
        )
    return [f"`{ranker}`, Δ in score points (0-100):", "", *lines]
