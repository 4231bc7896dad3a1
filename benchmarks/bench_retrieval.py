"""One JD against a large stored pool: exhaustive scoring vs the exact and the approximate shortlist.

Usage::

    python benchmarks/bench_retrieval.py DB_DIR [--n 100000] [--queries 20] [--top 100] [--json]

``DB_DIR`` holds the synthetic LanceDB store (built once, reused when it already has
``--n`` CVs). CVs are synthetic (real skill names and sentences built from them; section
vectors scattered around one of six job-family centroids; 1-4 experience roles); each
query is one of ``--queries`` synthetic JDs, its vectors drawn the same way.

Rows of the printed table, all measured in this run:

- ``exhaustive``: ``score_table`` over every stored CV, streamed in batches with every
  query scored on each batch (one pass over the table; the latency is the pass divided by
  the queries). Its top ``--top`` per query (score, then cv_id) is the truth for recall.
- ``exact shortlist``: ``match_pool`` below ``ann_min_rows`` (``shortlist.exact_shortlist``).
- ``approximate shortlist``: ``match_pool`` past ``ann_min_rows`` (sketch, then re-rank).

For each: p50 and p99 latency of the top ``--top`` results, the median of each step
(JD features, the shortlist and its stages, feature read, rescoring) and of the CPU time
of all threads per query (steadier than wall time on a shared machine), the median CVs
kept at each shortlist stage, and recall@10 / recall@top against the exhaustive ranking. Also: the
pool held in memory per CV, and the seconds to load it (read, quantize, sketch, pack:
the cost of each new table version) and to build the full-text index.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synthetic  # noqa: E402

from cvmatch_ray.config import RetrievalSettings, ScoreWeights  # noqa: E402
from cvmatch_ray.match.features import FEATURE_COLUMNS, cv_feature_columns  # noqa: E402
from cvmatch_ray.match.rank import features_of  # noqa: E402
from cvmatch_ray.match.retrieve import match_pool  # noqa: E402
from cvmatch_ray.match.scoring import score_table  # noqa: E402
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention  # noqa: E402
from cvmatch_ray.storage.records import CVRecord, JDRecord  # noqa: E402
from cvmatch_ray.storage.tables import Store  # noqa: E402

logger = logging.getLogger("bench_retrieval")
DIM = 384
TITLES = ["Software Engineer", "Accountant", "Data Analyst", "Recruiter", "Sales Manager", "Graphic Designer"]


# Section vectors are a job family's centroid plus noise, so cosines spread like real
# ones (same family ~0.3-0.7, others ~0) and the semantic and title components rank the
# pool; pure random vectors would give every CV the same (zero) semantic credit and turn
# the top of the ranking into ties.
_CENTROIDS = _synthetic.unit(np.random.default_rng(12345), len(TITLES), DIM)
FAMILY_NOISE = 1.0


def _family_vectors(rng: np.random.Generator, family: int) -> np.ndarray:
    v = _CENTROIDS[family] + rng.normal(scale=FAMILY_NOISE / np.sqrt(DIM), size=(3, DIM)) * rng.uniform(0.5, 1.5)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _roles(rng: np.random.Generator, family: int, months: int, skills: list[str]) -> list[dict]:
    """1-4 experience roles splitting ``months``: mostly the CV's family, sometimes another,
    each with a few of its skills (what relevant experience weighs; real CVs have roles, and
    the whole-pool prescore pays per role)."""
    count = int(rng.integers(1, 5))
    cuts = np.sort(rng.integers(0, months + 1, size=count - 1)) if count > 1 else np.zeros(0, dtype=np.int64)
    spans = np.diff(np.concatenate([[0], cuts, [months]]))
    roles = []
    for span in spans:
        other = rng.random() < 0.3
        role_family = int(rng.integers(0, len(TITLES))) if other else family
        take = rng.choice(skills, size=int(rng.integers(0, min(3, len(skills)) + 1)), replace=False).tolist()
        roles.append({"title": TITLES[role_family], "months": int(span), "skills": take})
    return roles


def build(store: Store, n: int, queries: int, seed: int = 0, batch: int = 5000) -> list[str]:
    """Fill ``store`` with ``n`` synthetic CVs and ``queries`` JDs (if not there yet); return the JD ids."""
    rng = np.random.default_rng(seed)
    if store.count_cvs() < n:
        levels = list(EducationLevel)
        for start in range(store.count_cvs(), n, batch):
            m = min(batch, n - start)
            records = []
            for j in range(m):
                skills = rng.choice(_synthetic.SKILLS, size=int(rng.integers(2, 12)), replace=False).tolist()
                family = int(rng.integers(0, len(TITLES)))
                title = TITLES[family]
                months = int(rng.integers(0, 300))
                profile = CVProfile(headline=title, skills=[SkillMention(name=s) for s in skills],
                                    total_experience_months=months, experience=_roles(rng, family, months, skills),
                                    education=[{"level": levels[int(rng.integers(0, len(levels)))].value}])
                text = (f"{title}\nSkills: {', '.join(skills)}\n"
                        + " ".join(f"Worked with {s} on production systems." for s in skills))
                records.append(CVRecord(cv_id=f"{start + j:032x}", filename=None, text=text, profile=profile,
                                        stats=CVStats.of(profile), provenance=Provenance(),
                                        features=cv_feature_columns(profile, text),
                                        vectors=_family_vectors(rng, family)))
            store.upsert_cvs(records)
            logger.info("stored %d / %d CVs", start + m, n)
        store.optimize()
    jd_ids = []
    jd_records = []
    for q in range(queries):
        skills = rng.choice(_synthetic.SKILLS, size=6, replace=False).tolist()
        jd = JDProfile(title=TITLES[q % len(TITLES)], required_skills=skills[:4], preferred_skills=skills[4:],
                       min_years=float(rng.integers(1, 8)), education_level=EducationLevel.bachelor)
        jd_id = f"{0xf0000000 + q:032x}"
        jd_ids.append(jd_id)
        jd_records.append(JDRecord(jd_id=jd_id, filename=None, profile=jd, provenance=Provenance(),
                                   text=f"{jd.title}. Requires {', '.join(skills[:4])}; nice to have {', '.join(skills[4:])}.",
                                   vectors=_family_vectors(rng, q % len(TITLES))))
    store.upsert_jds(jd_records)
    return jd_ids


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def exhaustive_top(store: Store, jd_ids: Sequence[str], top: int, weights: ScoreWeights,
                   idf_sample: int, batch: int = 20000) -> tuple[dict[str, list[str]], float]:
    """Every query's top ``top`` cv_ids by the full scorer over every stored CV, in one pass
    (batches of ``batch`` rows, each scored for every query), and the pass's seconds."""
    jds = [features_of(store, store.get_jd(j), idf_sample=idf_sample) for j in jd_ids]
    best: dict[str, tuple[np.ndarray, np.ndarray]] = {j: (np.zeros(0), np.zeros(0, dtype=object)) for j in jd_ids}
    start = time.perf_counter()
    dataset = store._table("cvs", create=False).to_lance()  # noqa: SLF001 (a benchmark reads the table as is)
    for data in dataset.to_batches(columns=list(FEATURE_COLUMNS), batch_size=batch, batch_readahead=1):
        table = pa.Table.from_batches([data])
        for jd_id, jd in zip(jd_ids, jds, strict=True):
            scored = score_table(jd, table, weights)
            scores = np.concatenate([best[jd_id][0], scored.scores])
            ids = np.concatenate([best[jd_id][1], scored.cv_ids])
            order = np.lexsort((ids.astype(str), -scores))[:top]
            best[jd_id] = (scores[order], ids[order])
    return {j: [str(c) for c in best[j][1]] for j in jd_ids}, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db_dir", type=Path)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--top", type=int, default=100)
    p.add_argument("--ann-candidates", type=int, default=RetrievalSettings().ann_candidates)
    p.add_argument("--ann-margin", type=int, default=RetrievalSettings().ann_margin)
    p.add_argument("--skip-approximate", action="store_true")
    p.add_argument("--skip-exhaustive", action="store_true",
                   help="take the exact shortlist's results as the truth (they equal the exhaustive ranking's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = Store(str(args.db_dir), dim=DIM)
    jd_ids = build(store, args.n, args.queries)
    settings = RetrievalSettings(ann_candidates=args.ann_candidates, ann_margin=args.ann_margin)
    weights = ScoreWeights()
    load = os.getloadavg()[0]

    t = time.perf_counter()
    store.ensure_search_indexes()
    fts_s = time.perf_counter() - t
    t = time.perf_counter()
    pool = store.pool_arrays()
    load_s = time.perf_counter() - t
    per_cv = pool.nbytes / max(len(pool), 1)
    logger.info("pool of %d CVs loaded in %.1f s, %.0f bytes per CV", len(pool), load_s, per_cv)

    rows = []
    truth: dict[str, list[str]] = {}
    if not args.skip_exhaustive:
        truth, pass_s = exhaustive_top(store, jd_ids, args.top, weights, settings.lexical_idf_sample)
        rows.append(("exhaustive", [pass_s * 1000 / len(jd_ids)] * len(jd_ids), {}, {}, 1.0, 1.0))
        logger.info("exhaustive pass: %.1f s for %d queries", pass_s, len(jd_ids))

    def run(label: str, settings: RetrievalSettings) -> None:
        lat, steps, stages, r10, rtop = [], {}, {}, [], []
        for jd_id in jd_ids:
            cpu = time.process_time()
            pm = match_pool(store, jd_id, top_k=args.top, weights=weights, settings=settings)
            # CPU seconds of every thread: steadier than wall time on a shared machine.
            steps.setdefault("cpu", []).append((time.process_time() - cpu) * 1000)
            lat.append(pm.timings_ms["total"])
            for k, v in pm.timings_ms.items():
                steps.setdefault(k, []).append(v)
            for k, v in pm.stages.items():
                stages.setdefault(k, []).append(v)
            got = [r.cv_id for r in pm.results]
            truth.setdefault(jd_id, got)  # --skip-exhaustive: the exact shortlist is the truth
            r10.append(len(set(got[:10]) & set(truth[jd_id][:10])) / 10)
            rtop.append(len(set(got) & set(truth[jd_id])) / len(truth[jd_id]))
        rows.append((label, lat, {k: float(np.median(v)) for k, v in steps.items()},
                     {k: int(np.median(v)) for k, v in stages.items()}, float(np.mean(r10)), float(np.mean(rtop))))

    run("exact shortlist", settings.model_copy(update={"ann_min_rows": 10**12}))
    if not args.skip_approximate:
        run("approximate shortlist", settings.model_copy(update={"ann_min_rows": 1}))

    base = float(np.median(rows[0][1]))
    facts = {"cvs": store.count_cvs(), "top": args.top, "queries": args.queries, "ann_candidates": settings.ann_candidates,
             "ann_margin": settings.ann_margin, "cpus": os.cpu_count(), "pool_bytes_per_cv": round(per_cv),
             "pool_load_s": round(load_s, 1), "fulltext_index_s": round(fts_s, 1), "load_start": round(load, 1),
             "load_end": round(os.getloadavg()[0], 1)}
    if args.json:
        print(json.dumps({**facts, "rows": [
            {"method": label, "p50_ms": round(float(np.median(lat)), 2), "p99_ms": round(_pct(lat, 99), 2),
             "speedup_vs_first": round(base / float(np.median(lat)), 2), "recall_at_10": round(r10, 4),
             "recall_at_top": round(rtop, 4), "step_medians_ms": {k: round(v, 2) for k, v in steps.items()},
             "stage_medians": stages}
            for label, lat, steps, stages, r10, rtop in rows
        ]}, indent=2))
        return 0
    out = [f"JD vs {facts['cvs']:,} stored CVs, top {args.top}, {args.queries} JDs; pool in memory "
           f"{per_cv:,.0f} bytes per CV, loaded in {load_s:.1f} s (full-text index {fts_s:.1f} s); "
           f"{os.cpu_count()} CPUs, 1-min load {load:.1f} at start, {os.getloadavg()[0]:.1f} at end",
           "",
           "| method | p50 ms | p99 ms | vs first row | recall@10 | recall@top | step medians (ms) | CVs kept (medians) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for label, lat, steps, stages, r10, rtop in rows:
        step = ", ".join(f"{k} {v:.1f}" for k, v in steps.items() if k != "total")
        kept = ", ".join(f"{k} {v:,}" for k, v in stages.items())
        out.append(f"| {label} | {np.median(lat):.1f} | {_pct(lat, 99):.1f} | {base / np.median(lat):.1f}x | "
                   f"{r10:.3f} | {rtop:.3f} | {step or '-'} | {kept or '-'} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
