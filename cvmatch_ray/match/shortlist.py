"""Which stored CVs can be among a JD's best: shortlists from the pool held in memory.

``match.retrieve`` scores only a shortlist in full. ``exact_shortlist`` finds, without
scoring the pool in full, every CV whose score can reach the ``k``-th best, in three
stages of bounds, each on fewer CVs and tighter than the last:

1. every CV: its score bounded from the int8 vectors (``match.quantized``: each dot
   product within a stated error), its skills and education exactly, and its experience
   between what it would be with no and with all months relevant. ``T`` = the ``k``-th
   best lower bound; a CV whose upper bound is under ``T`` cannot be among the best ``k``
   (``k`` CVs score at least ``T``), and is dropped;
2. the CVs left: the same with their experience exact (``scoring.prescore`` on their rows);
3. the CVs still left: the same with their exact float32 vectors, read by position.

The bounds hold because every component of the score is a non-decreasing function of its
signal (cosines, months) and each stage bounds the signals (``SIGNAL_SLACK`` covers the
float32 storage of the summed vectors). Stage 1 evaluates the scorer's formulas in float32
over the whole pool, with ``ROUNDING_SLACK`` for what that and the scorer's rounding can
move; stages 2 and 3 run ``scoring.prescore`` itself on their rows. So the shortlist holds
the exhaustive ranking's top ``k`` (ties included), as ``tests/test_shortlist.py`` checks
against ``rank_stored``; how many CVs it holds past ``k`` depends on how close scores sit
around the ``k``-th.

``approximate_shortlist`` skips the pass over every CV's int8 vectors: it ranks the pool by
a sketch of them (``quantized.Sketch``) with the same exact skills and education, re-ranks
the best few hundred or thousand with their full int8 vectors and exact roles, and keeps
the best ``k`` and a margin. Faster, with no guarantee: its recall is measured
(``benchmarks/bench_retrieval.py``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from cvmatch_ray.config import ScoreWeights
from cvmatch_ray.match import scoring
from cvmatch_ray.match.experience import RoleLists
from cvmatch_ray.match.features import CodedLists
from cvmatch_ray.match.jd import JDFeatures
from cvmatch_ray.match.quantized import single_threaded
from cvmatch_ray.storage.pool import PoolArrays
from cvmatch_ray.storage.records import SEARCH_VECTOR_COLUMNS, SUM_VECTOR_COLUMN

TITLE_COLUMN = scoring.VECTOR_COLUMNS[scoring.TITLE]
#: Allowed for on every dot product and cosine besides the int8 error: the summed vectors
#: are float32 sums (a few 1e-7 off the real sum of the sections the scorer reads), and
#: float64 products of float32 rows are exact to ~1e-16.
SIGNAL_SLACK = 1e-5
#: Allowed for on months: ``experience_signal`` adds shares of months in float64.
MONTHS_SLACK = 1e-6
#: Stage 1 adds the components in float32 and skips the scorer's rounding (components to 4
#: decimals, the score to 2: at most 0.005 + 0.005 points) and float32's (~1e-5 points).
ROUNDING_SLACK = 0.02
# Stage 1 knows which components read bounded signals (semantic, title, experience) and
# which exact ones (skills, education): a component it does not know must be placed there
# before a bound can be trusted.
if set(scoring.COMPONENTS) != {"required_skills", "preferred_skills", "semantic", "experience", "education",
                               "title", "lexical"}:
    raise ImportError(f"match.shortlist does not know how to bound the components {scoring.COMPONENTS}")
#: Stage 3 reads float32 rows; skipped when it could drop at most this many CVs (scoring
#: a few more in full costs less than the read).
REFINE_MIN_GAIN = 8

if not {SUM_VECTOR_COLUMN, TITLE_COLUMN} <= set(SEARCH_VECTOR_COLUMNS):
    raise ImportError("the pool must hold the title and summed vectors")  # what stage 1 reads


@dataclass
class Shortlist:
    """Row positions in the pool, best first by prescore (ties by cv_id), how many rows each
    stage kept, and how long each step took (milliseconds)."""

    positions: np.ndarray
    prescores: np.ndarray
    stages: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


class _Laps:
    """Milliseconds since the last lap, by step name."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, step: str) -> None:
        now = time.perf_counter()
        self.ms[step] = (now - self._last) * 1000
        self._last = now


@dataclass(frozen=True)
class _Dots:
    """The two dot products of some rows with the JD, each within ``±err`` of the exact one."""

    title: np.ndarray
    total: np.ndarray
    title_err: np.ndarray | float
    total_err: np.ndarray | float

    def take(self, rows: np.ndarray) -> _Dots:
        def pick(err: np.ndarray | float) -> np.ndarray | float:
            return err[rows] if isinstance(err, np.ndarray) else err

        return _Dots(self.title[rows], self.total[rows], pick(self.title_err), pick(self.total_err))

    def low(self) -> tuple[np.ndarray, np.ndarray]:
        """``(title, total)`` at least this far down (float32 for the whole pool, else float64)."""
        return self.title - self.title_err - SIGNAL_SLACK, self.total - self.total_err - SIGNAL_SLACK

    def high(self) -> tuple[np.ndarray, np.ndarray]:
        return self.title + self.title_err + SIGNAL_SLACK, self.total + self.total_err + SIGNAL_SLACK


def _queries(jd: JDFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The title and summed query vectors, as the prescore has always formed them (float32)."""
    vectors = jd.vectors.astype(np.float32)
    return vectors[scoring.TITLE], vectors.sum(axis=0)


def pool_dots(jd: JDFeatures, pool: PoolArrays) -> _Dots:
    """Every CV's two dot products with the JD from the int8 codes, with their bounds."""
    title_q, total_q = _queries(jd)
    title, title_err = pool.vectors[TITLE_COLUMN].dots(title_q)
    total, total_err = pool.vectors[SUM_VECTOR_COLUMN].dots(total_q)
    return _Dots(title, total, title_err, total_err)


def _weighed(jd: JDFeatures, weights: ScoreWeights) -> JDFeatures:
    """The JD with what the prescore does not weigh left out: components of weight 0
    (``scoring._combine`` skips them, so the score is unchanged) and the lexical component
    (the prescore has no BM25). Not for experience: which roles count reads ``jd.wanted``."""
    w = weights.component_weights
    required = bool(w["required_skills"])
    preferred = bool(w["preferred_skills"])
    return dataclasses.replace(
        jd,
        required=jd.required if required else (),
        required_categories=jd.required_categories if required else (),
        required_statements=jd.required_statements if required else (),
        preferred=jd.preferred if preferred else (),
        preferred_categories=jd.preferred_categories if preferred else (),
        preferred_statements=jd.preferred_statements if preferred else (),
        min_years=jd.min_years if w["experience"] else None,
        education_rank=jd.education_rank if w["education"] else None,
        has_title=jd.has_title and bool(w["title"]),
        lexical_terms=(),
        lexical_idf=(),
    )


def _experience_months(jd: JDFeatures, pool: PoolArrays, weights: ScoreWeights,
                       end: str) -> tuple[np.ndarray, np.ndarray]:
    """The months the experience component counts, bounded without reading roles, as a table
    over whole months and each CV's index into it: ``(months[k], index[n])``.

    A CV with roles counts between ``1 - share`` of its months (none relevant: ``end`` =
    "low") and all of them ("high"); one without counts its months
    (``experience.experience_signal``). Months are whole numbers, so the component is
    computed once per distinct value and looked up (one gather instead of a few passes).
    """
    top = int(pool.experience_months.max(initial=0)) + 1
    whole = np.arange(top, dtype=np.float64)
    share = weights.relevant_experience_share
    if share == 0 or (jd.norm_title is None and not jd.wanted):
        return whole, pool.experience_months  # the signal is the months themselves
    if end == "high":
        return whole + MONTHS_SLACK, pool.experience_months
    # Low: CVs with roles look up the second half of the table.
    table = np.concatenate([whole, (1.0 - share) * whole]) - MONTHS_SLACK
    return table, pool.experience_months + pool.has_roles.astype(np.int32) * np.int32(top)


def _pattern_signals(jd: JDFeatures, rows: int, **given: np.ndarray) -> scoring._Signals:
    """``rows`` rows of signals for ``jd``, zero but for ``given`` (to evaluate a component's formula)."""
    zeros = np.zeros(rows)
    required = np.zeros((rows, len(jd.required)), dtype=bool)
    preferred = np.zeros((rows, len(jd.preferred)), dtype=bool)
    base = {"required_hits": required, "required_related": required, "preferred_hits": preferred,
            "preferred_related": preferred,
            "experience_months": zeros, "education_rank": np.zeros(rows, np.int64), "semantic_cos": zeros,
            "title_cos": zeros, "title_hit": np.zeros(rows, dtype=bool), "bm25": zeros}
    return scoring._Signals(**{**base, **given})  # noqa: SLF001


def _skill_part(jd: JDFeatures, pool: PoolArrays, weights: ScoreWeights, name: str) -> np.ndarray | None:
    """[n] the required (or preferred) skills component of every CV, exactly as the scorer
    computes it, or None when it does not apply.

    Where skills count one by one, the component depends only on how many skills a CV has
    and how many more it has a related skill for: the scorer's own formula runs once per
    such pair of counts, and each CV looks its pair up. Requirement statements weigh which
    skills: there the scorer runs on every CV's hits.
    """
    prefix = "required" if name == "required_skills" else "preferred"
    wanted: tuple[str, ...] = getattr(jd, prefix)
    categories: tuple[str | None, ...] = getattr(jd, f"{prefix}_categories")
    if not wanted:
        return None
    n, width = len(pool), len(wanted)
    if weights.requirement_statements and getattr(jd, f"{prefix}_statements"):
        hits = pool.skills.hits(wanted)
        related = pool.skills.category_hits(categories) if categories else np.zeros_like(hits)
        only = dataclasses.replace(jd, **{p: () for p in ("required", "preferred") if p != prefix})
        sig = _pattern_signals(only, n, **{f"{prefix}_hits": hits, f"{prefix}_related": related})
        return scoring._components(only, sig, weights)[name]  # noqa: SLF001
    counts = np.int16 if (width + 1) ** 2 < 2**15 else np.int64  # small ints: less memory to stream
    exact = np.zeros(n, counts)
    partial = np.zeros(n, counts)
    for j, skill in enumerate(wanted):
        hit = pool.skills.value_mask(skill)
        exact += hit
        if categories and categories[j] is not None:
            partial += pool.skills.category_mask(categories[j]) & ~hit
    # One pattern per (exact, partial): the first `exact` skills hit, the next `partial` related.
    e, p = np.divmod(np.arange((width + 1) ** 2), width + 1)
    columns = np.arange(width)
    hits = columns[None, :] < e[:, None]
    related = (columns[None, :] >= e[:, None]) & (columns[None, :] < (e + p)[:, None])
    only = dataclasses.replace(jd, **{p_: () for p_ in ("required", "preferred") if p_ != prefix})
    table = scoring._components(  # noqa: SLF001
        only, _pattern_signals(only, len(e), **{f"{prefix}_hits": hits, f"{prefix}_related": related}), weights)[name]
    exact *= width + 1
    exact += partial
    return table[exact]  # each CV's (exact, partial) pattern


def pool_bounds(jd: JDFeatures, pool: PoolArrays, dots: _Dots, weights: ScoreWeights) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: ``(low, high)`` [n] bounds of every CV's prescore, in float32.

    The scorer's components (``scoring._components``) are weighted and averaged as in
    ``scoring._combine``: skills and education exactly (their formulas evaluated once per
    distinct value and looked up), the semantic, title and experience components by the
    scorer's formulas at the low and the high end of their signals. Their rounding (to
    ``COMPONENT_DECIMALS``, then the score to ``SCORE_DECIMALS``) is left to
    ``ROUNDING_SLACK``.
    """
    parts = _fixed_parts(jd, pool, weights)
    low = parts.score(*dots.low(), _experience_months(jd, pool, weights, "low"))
    high = parts.score(*dots.high(), _experience_months(jd, pool, weights, "high"))
    return low - np.float32(ROUNDING_SLACK), high + np.float32(ROUNDING_SLACK)


@dataclass
class _FixedParts:
    """What stage 1 computes once per JD: the weighted components that read no dot product,
    and how to add the ones that do."""

    jd: JDFeatures
    weights: ScoreWeights
    applies: list[str]
    fixed: np.ndarray  # [n] float32: the weighted skills and education components
    title_credit: np.ndarray | None  # [n] bool: the CV holds the JD title's occupation
    scale: float  # 100 / the applicable weights' sum

    def score(self, title: np.ndarray, total: np.ndarray, months: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """[n] float32 prescores (unrounded) with these dot products and months (a table
        and each CV's index into it, ``_experience_months``).

        In place, in two [n] arrays: a fresh temporary per step cost more than the step at
        a million CVs (page faults on new memory); the float32 arithmetic errs by ~1e-6 of
        a point, well inside ``ROUNDING_SLACK``.
        """
        w = self.weights.component_weights
        n = len(self.fixed)
        if not self.applies:
            return np.zeros(n, np.float32)
        score = self.fixed.copy()
        part = np.empty(n, np.float32)
        sections = len(scoring.VECTOR_COLUMNS) ** 2  # the semantic cosine is the summed dot / 9
        _cosine_component_into(total, 1.0 / sections, part)
        part *= np.float32(w["semantic"])
        score += part
        if "title" in self.applies:
            _cosine_component_into(title, 1.0, part)
            if self.title_credit is not None:
                # As scoring._components: the title cosine, or the credit for the same occupation.
                credit = np.float32(self.weights.title_match_credit)
                np.maximum(part, credit, out=part, where=self.title_credit)
            part *= np.float32(w["title"])
            score += part
        if "experience" in self.applies:
            table, index = months
            component = scoring._experience_component(table, self.jd.min_years)  # noqa: SLF001
            weighted = np.float32(w["experience"]) * component
            np.take(weighted.astype(np.float32), index, out=part)
            score += part
        score *= np.float32(self.scale)
        return score


def _cosine_component_into(cosines: np.ndarray, factor: float, out: np.ndarray) -> None:
    """``scoring._cosine_component(cosines * factor)`` into ``out`` (float32, in place): the
    same linear map onto [0, 1] between ``COSINE_FLOOR`` and ``COSINE_CEIL``, clipped."""
    span = scoring.COSINE_CEIL - scoring.COSINE_FLOOR
    np.multiply(cosines, np.float32(factor / span), out=out)
    out -= np.float32(scoring.COSINE_FLOOR / span)
    np.clip(out, 0.0, 1.0, out=out)


def _fixed_parts(jd: JDFeatures, pool: PoolArrays, weights: ScoreWeights) -> _FixedParts:
    n = len(pool)
    weighed = _weighed(jd, weights)
    w = weights.component_weights
    # Which components apply to this JD, from the scorer itself.
    applies = [c for c, v in scoring._components(weighed, _pattern_signals(weighed, 1), weights).items()  # noqa: SLF001
               if v is not None and w[c] != 0]
    total_weight = sum(w[c] for c in applies)
    if n == 0 or total_weight == 0:
        return _FixedParts(weighed, weights, [], np.zeros(n, np.float32), None, 0.0)
    fixed = np.zeros(n, np.float32)
    for name in ("required_skills", "preferred_skills"):
        if name in applies:
            fixed += np.float32(w[name]) * _skill_part(weighed, pool, weights, name).astype(np.float32)
    if "education" in applies:
        ranks = np.arange(int(pool.education_rank.max(initial=0)) + 1)
        table = scoring._components(  # noqa: SLF001
            weighed, _pattern_signals(weighed, len(ranks), education_rank=ranks), weights)["education"]
        fixed += (np.float32(w["education"]) * table.astype(np.float32))[pool.education_rank]
    credit = None
    if "title" in applies and weighed.norm_title is not None:
        credit = pool.norm_titles.value_mask(weighed.norm_title)
    return _FixedParts(weighed, weights, applies, fixed, credit, 100.0 / total_weight)


def _prescore_rows(jd: JDFeatures, pool: PoolArrays, rows: np.ndarray, weights: ScoreWeights,
                   title: np.ndarray, total: np.ndarray,
                   lists: tuple[CodedLists, CodedLists, RoleLists | None]) -> np.ndarray:
    """``scoring.prescore`` of these rows with these dot products (everything else exact)."""
    skills, titles, roles = lists
    return scoring.prescore(
        jd, title_dot=title, sum_dot=total, experience_months=pool.experience_months[rows],
        education_rank=pool.education_rank[rows], skills=skills, norm_titles=titles, weights=weights, roles=roles,
    )


def _row_lists(pool: PoolArrays, rows: np.ndarray) -> tuple[CodedLists, CodedLists, RoleLists | None]:
    table = pool.signals(rows)
    return CodedLists(table.column("skills")), CodedLists(table.column("norm_titles")), RoleLists.from_table(table)


def _kept(low: np.ndarray, high: np.ndarray, k: int) -> np.ndarray:
    """Indices whose ``high`` reaches the ``k``-th largest ``low`` (all when ``k`` covers them)."""
    if k >= len(low):
        return np.arange(len(low))
    threshold = np.partition(low, len(low) - k)[len(low) - k]
    return np.flatnonzero(high >= threshold)


def _ordered(pool: PoolArrays, rows: np.ndarray, prescores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and prescores best first, equal prescores by cv_id."""
    order = np.lexsort((pool.cv_ids[rows], -prescores))
    return rows[order], prescores[order]


def exact_shortlist(jd: JDFeatures, pool: PoolArrays, k: int, weights: ScoreWeights | None = None,
                    dots: _Dots | None = None, *, ordered: bool = False) -> Shortlist:
    """Every CV whose prescore can be among the ``k`` best (module docstring), best first.

    Where BM25 weighs nothing the prescore is the score, so the shortlist holds the
    exhaustive ranking's top ``k``. ``dots``: stage 1's dot products, if already computed.
    ``ordered``: order by the exact prescore (reads the float32 vectors even where stage 3
    would drop few CVs); else a short list may be ordered by its bounds' midpoints.
    """
    with single_threaded():
        return _exact_shortlist(jd, pool, k, weights or ScoreWeights(), dots, ordered=ordered)


def _exact_shortlist(jd: JDFeatures, pool: PoolArrays, k: int, weights: ScoreWeights, dots: _Dots | None, *,
                     ordered: bool) -> Shortlist:
    n = len(pool)
    if n == 0 or k <= 0:
        return Shortlist(np.zeros(0, np.int64), np.zeros(0), {"pool": n})
    laps = _Laps()
    dots = dots if dots is not None else pool_dots(jd, pool)
    laps("dots")
    low, high = pool_bounds(jd, pool, dots, weights)
    rows = _kept(low, high, k)
    stages = {"pool": n, "bounded": len(rows)}
    laps("bounds")
    # Stage 2: exact skills, years and roles of the rows left; int8 dot products still.
    lists = _row_lists(pool, rows)
    near = dots.take(rows)
    low = _prescore_rows(jd, pool, rows, weights, *near.low(), lists)
    high = _prescore_rows(jd, pool, rows, weights, *near.high(), lists)
    keep = _kept(low, high, k)
    rows = rows[keep]
    stages["roles"] = len(rows)
    laps("roles")
    if len(rows) <= k + REFINE_MIN_GAIN and not ordered:
        # Too few left to be worth a read: ordered by the middle of their bounds.
        prescores = ((low + high) / 2)[keep]
    else:
        # Stage 3: the exact float32 vectors of the rows left, read by position.
        exact = pool.float_vectors(rows)
        title_q, total_q = _queries(jd)
        title = exact[TITLE_COLUMN].astype(np.float64) @ title_q.astype(np.float64)
        total = exact[SUM_VECTOR_COLUMN].astype(np.float64) @ total_q.astype(np.float64)
        lists = _row_lists(pool, rows)
        prescores = _prescore_rows(jd, pool, rows, weights, title, total, lists)
        tight = _Dots(title, total, 0.0, 0.0)
        keep = _kept(_prescore_rows(jd, pool, rows, weights, *tight.low(), lists),
                     _prescore_rows(jd, pool, rows, weights, *tight.high(), lists), k)
        rows, prescores = rows[keep], prescores[keep]
    stages["exact"] = len(rows)
    positions, ordered = _ordered(pool, rows, prescores)
    laps("exact")
    return Shortlist(positions, ordered, stages, laps.ms)


def approximate_shortlist(jd: JDFeatures, pool: PoolArrays, k: int, weights: ScoreWeights | None = None, *,
                          candidates: int, margin: int) -> Shortlist:
    """The CVs most likely among the ``k`` best, without a pass over every CV's vectors.

    1. every CV: its prescore estimated from its sketches (``quantized.Sketch``: its
       vectors in a few dimensions), its skills and education exactly, and its experience
       as if every month were relevant; the best ``candidates`` go on;
    2. those: their int8 dot products in full and their exact experience
       (``scoring.prescore``); the best ``k + margin`` are the shortlist.

    A CV the sketch misjudges by more than the candidates' spread is missed: how often is
    measured against the exact ranking (``benchmarks/bench_retrieval.py``, recall@10).
    """
    with single_threaded():
        return _approximate_shortlist(jd, pool, k, weights or ScoreWeights(), candidates, margin)


def _approximate_shortlist(jd: JDFeatures, pool: PoolArrays, k: int, weights: ScoreWeights, candidates: int,
                           margin: int) -> Shortlist:
    n = len(pool)
    if n == 0 or k <= 0:
        return Shortlist(np.zeros(0, np.int64), np.zeros(0), {"pool": n})
    laps = _Laps()
    title_q, total_q = _queries(jd)
    sketched = pool.sketches[TITLE_COLUMN].dots(title_q), pool.sketches[SUM_VECTOR_COLUMN].dots(total_q)
    # Experience at its upper bound (every month relevant): the best CVs' roles mostly are
    # the JD's, and a midway guess ranked some of them thousands deep at a million CVs.
    estimate = _fixed_parts(jd, pool, weights).score(*sketched, _experience_months(jd, pool, weights, "high"))
    take = min(max(candidates, k + margin), n)
    rows = np.argpartition(-estimate, take - 1)[:take] if take < n else np.arange(n)
    laps("sketch")
    title, _ = pool.vectors[TITLE_COLUMN].dots_rows(rows, title_q)
    total, _ = pool.vectors[SUM_VECTOR_COLUMN].dots_rows(rows, total_q)
    prescores = _prescore_rows(jd, pool, rows, weights, title, total, _row_lists(pool, rows))
    # Best first, equal prescores by cv_id, as the exhaustive ranking breaks ties.
    positions, ordered = _ordered(pool, rows, prescores)
    keep = min(k + margin, len(rows))
    laps("rerank")
    return Shortlist(positions[:keep], ordered[:keep], {"pool": n, "sketched": len(rows), "kept": keep}, laps.ms)
