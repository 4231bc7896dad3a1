"""One JD against a large stored pool: exhaustive scoring vs hybrid retrieval (exact and ANN).

Usage::

    python benchmarks/bench_retrieval.py DB_DIR [--n 100000] [--queries 20] [--top 100]

``DB_DIR`` holds the synthetic LanceDB store (built once, reused when it already has
``--n`` CVs). CVs are synthetic (real skill names and sentences built from them; section
vectors scattered around one of six job-family centroids); each query is one of
``--queries`` synthetic JDs, its vectors drawn the same way.

Rows of the printed table, all measured in this run:

- ``exhaustive``: ``rank_stored`` scores every stored CV (the baseline, and the truth for recall).
- ``hybrid exact``: ``match_pool`` with exact vector search (the columns held in memory), full-text index built.
- ``hybrid ANN``: the same after an IVF_PQ index is built on the vector columns.

For each: p50 and p99 latency of the top-``--top`` results, the median of each step
(JD features, full-text search, each vector search, fusion, feature read, rescoring), and
recall@10 / recall@top against the exhaustive ranking.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _synthetic  # noqa: E402

from cvmatch_ray.config import RetrievalSettings  # noqa: E402
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.match.rank import rank_stored  # noqa: E402
from cvmatch_ray.match.retrieve import match_pool  # noqa: E402
from cvmatch_ray.schemas import CVProfile, CVStats, EducationLevel, JDProfile, Provenance, SkillMention  # noqa: E402
from cvmatch_ray.storage.records import CVRecord, JDRecord
from cvmatch_ray.storage.tables import Store

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
                profile = CVProfile(headline=title, skills=[SkillMention(name=s) for s in skills],
                                    total_experience_months=int(rng.integers(0, 300)),
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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("db_dir", type=Path)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--top", type=int, default=100)
    p.add_argument("--candidates", type=int, default=RetrievalSettings().candidates)
    p.add_argument("--skip-ann", action="store_true")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = Store(str(args.db_dir), dim=DIM)
    jd_ids = build(store, args.n, args.queries)
    settings = RetrievalSettings(candidates=args.candidates, per_source=args.candidates)
    load = os.getloadavg()[0]

    truth: dict[str, list[str]] = {}
    rows = []
    times = []
    for jd_id in jd_ids:
        t = time.perf_counter()
        truth[jd_id] = [r.cv_id for r in rank_stored(store, jd_id, top_k=args.top)]
        times.append((time.perf_counter() - t) * 1000)
    rows.append(("exhaustive", times, {}, 1.0, 1.0))

    def run(label: str, settings: RetrievalSettings) -> None:
        lat, steps, r10, rtop = [], {}, [], []
        t = time.perf_counter()
        match_pool(store, jd_ids[0], top_k=args.top, settings=settings)  # warm caches (idf, vectors, index)
        logger.info("%s: first query (caches cold) %.0f ms", label, (time.perf_counter() - t) * 1000)
        for jd_id in jd_ids:
            pm = match_pool(store, jd_id, top_k=args.top, settings=settings)
            lat.append(pm.timings_ms["total"])
            for k, v in pm.timings_ms.items():
                steps.setdefault(k, []).append(v)
            got = [r.cv_id for r in pm.results]
            r10.append(len(set(got[:10]) & set(truth[jd_id][:10])) / 10)
            rtop.append(len(set(got) & set(truth[jd_id])) / len(truth[jd_id]))
        rows.append((label, lat, {k: float(np.median(v)) for k, v in steps.items()}, float(np.mean(r10)),
                     float(np.mean(rtop))))

    store.ensure_search_indexes(ann_min_rows=10**12)
    run("hybrid exact", settings.model_copy(update={"ann_min_rows": 10**12}))
    if not args.skip_ann:
        t = time.perf_counter()
        store.ensure_search_indexes(ann_min_rows=1)
        logger.info("ANN indexes built in %.1f s", time.perf_counter() - t)
        run("hybrid ANN (IVF_PQ)", settings.model_copy(update={"ann_min_rows": 1}))

    base = float(np.median(rows[0][1]))
    if args.json:
        print(json.dumps({
            "cvs": store.count_cvs(), "top": args.top, "queries": args.queries, "candidates": settings.candidates,
            "cpus": os.cpu_count(), "load_start": round(load, 1), "load_end": round(os.getloadavg()[0], 1),
            "rows": [
                {"method": label, "p50_ms": round(float(np.median(lat)), 2), "p99_ms": round(_pct(lat, 99), 2),
                 "speedup_vs_exhaustive": round(base / float(np.median(lat)), 2), "recall_at_10": round(r10, 4),
                 "recall_at_top": round(rtop, 4), "step_medians_ms": {k: round(v, 2) for k, v in steps.items()}}
                for label, lat, steps, r10, rtop in rows
            ],
        }, indent=2))
        return 0
    out = [f"JD vs {store.count_cvs():,} stored CVs, top {args.top}, {args.queries} JDs, {settings.candidates} "
           f"candidates rescored; {os.cpu_count()} CPUs, 1-min load {load:.1f} at start, {os.getloadavg()[0]:.1f} at end",
           "",
           "| method | p50 ms | p99 ms | vs exhaustive | recall@10 | recall@top | step medians (ms) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for label, lat, steps, r10, rtop in rows:
        step = ", ".join(f"{k} {v:.1f}" for k, v in steps.items() if k != "total")
        out.append(f"| {label} | {np.median(lat):.1f} | {_pct(lat, 99):.1f} | {base / np.median(lat):.1f}x faster | "
                   f"{r10:.3f} | {rtop:.3f} | {step or '-'} |")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
