"""Speed of the encoder and of the LanceDB store.

Usage::

    python benchmarks/bench_embed.py DATA_DIR [--cvs N] [--pool 10000] [--device cpu]

``DATA_DIR`` is the shared data folder (or its ``livecareer_resumes/texts.jsonl``): the
encoder is timed on real resume texts, cut into section texts by ``cv_section_texts`` (an
empty profile, so every section falls back to a window of the raw text: the longest, i.e.
the costliest, a section can be). The store is timed on synthetic rows with 384-dim
vectors in a temporary folder.

Each table row is compared with a baseline measured in the same run:

- encode: texts/s at batch sizes 1, 16, 64 with torch's default threads, and at 1 and 64
  with one thread (baseline: batch size 1, default threads);
- sections: CVs/s embedding 3 section texts per CV in one call over all CVs (baseline: one
  call per CV);
- upsert: rows/s writing 1,000 CVs in one ``upsert_cvs`` call (baseline: one call per row,
  timed on fewer rows);
- read_cv_features: 300 and all ``--pool`` rows, by ``cv_id IN (...)`` and by Arrow filter
  after a projected scan (baseline: a ``get_cv`` loop over the same 300 ids).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cvmatch_ray.embed import SECTIONS, Embedder, cv_section_texts
from cvmatch_ray.ids import document_id
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.schemas import (
    CVProfile,
    CVStats,
    EducationEntry,
    EducationLevel,
    ExperienceEntry,
    Provenance,
    SkillMention,
)
from cvmatch_ray.storage.records import CVRecord
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger("bench_embed")


def _texts_path(data: Path) -> Path:
    if data.is_file():
        return data
    for candidate in (data / "livecareer_resumes" / "texts.jsonl", data / "texts.jsonl"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no livecareer_resumes/texts.jsonl under {data}")


def _load_texts(data: Path, limit: int) -> list[str]:
    with _texts_path(data).open(encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return texts[:limit]


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by the rest of the machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---------------------------------------------------------------------------- encoder


def bench_encoder(embedder: Embedder, cv_texts: list[str], rows: list[tuple[str, str, float, str]]) -> None:
    sections = [cv_section_texts(CVProfile(), t) for t in cv_texts]
    body_texts = [s["experience"] for s in sections]
    words = statistics.mean(len(t.split()) for t in body_texts)
    embedder.encode(body_texts[:8])  # warm-up: first calls allocate

    baseline = None
    for batch_size in (1, 16, 64):
        embedder.batch_size = batch_size
        n = len(body_texts) if batch_size > 1 else min(len(body_texts), 48)
        seconds = _best(lambda n=n: embedder.encode(body_texts[:n]), repeat=2)
        rate = n / seconds
        baseline = baseline or rate
        label = f"encode, batch {batch_size} (~{words:.0f} words/text)"
        rows.append((label, "texts/s", rate, f"{rate / baseline:.2f}x"))

    # torch's default is one thread per core; on a shared machine fewer may win.
    import torch

    default_threads = torch.get_num_threads()
    if default_threads > 1:
        for batch_size in (1, 64):
            embedder.batch_size = batch_size
            n = len(body_texts) if batch_size > 1 else min(len(body_texts), 48)
            torch.set_num_threads(1)
            try:
                seconds = _best(lambda n=n: embedder.encode(body_texts[:n]), repeat=2)
            finally:
                torch.set_num_threads(default_threads)
            rate = n / seconds
            rows.append((f"encode, batch {batch_size}, 1 torch thread", "texts/s", rate, f"{rate / baseline:.2f}x"))

    embedder.batch_size = 64
    n_cvs = len(sections)
    per_cv_n = min(n_cvs, 24)
    per_cv = _best(lambda: [embedder.embed_sections([s]) for s in sections[:per_cv_n]], repeat=1)
    per_cv_rate = per_cv_n / per_cv
    rows.append((f"sections, 1 call per CV ({len(SECTIONS)} texts)", "CVs/s", per_cv_rate, "baseline"))
    one_call = _best(lambda: embedder.embed_sections(sections), repeat=1)
    rate = n_cvs / one_call
    rows.append((f"sections, 1 call for {n_cvs} CVs", "CVs/s", rate, f"{rate / per_cv_rate:.2f}x"))


# ------------------------------------------------------------------------------ store


def _synthetic_cvs(n: int, dim: int, start: int = 0) -> list[CVRecord]:
    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((n, 3, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    skills = [f"Skill {k}" for k in range(400)]
    records = []
    for i in range(n):
        k = start + i
        profile = CVProfile(
            headline=f"Engineer {k % 50}",
            summary="Builds and runs data pipelines. " * 5,
            skills=[SkillMention(name=s) for s in rng.choice(skills, size=15, replace=False)],
            experience=[
                ExperienceEntry(title=f"Developer {j}", months=24, responsibilities=["Wrote and shipped code."] * 4)
                for j in range(3)
            ],
            total_experience_months=int(rng.integers(0, 300)),
            education=[EducationEntry(level=EducationLevel.bachelor)],
        )
        records.append(
            CVRecord(
                cv_id=document_id(f"synthetic-cv-{k}"),
                filename=f"cv{k}.pdf",
                text="Synthetic CV text. " * 200,
                profile=profile,
                stats=CVStats.of(profile),
                provenance=Provenance(),
                features=cv_feature_columns(profile, "Synthetic CV text. " * 200),
                vectors=vectors[i],
            )
        )
    return records


def bench_store(pool: int, dim: int, rows: list[tuple[str, str, float, str]]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        store = Store(f"{tmp}/db", dim=dim)
        per_row_n = 50
        per_row = _synthetic_cvs(per_row_n, dim, start=10**6)
        store.upsert_cvs(per_row[:1])  # create the table outside the timings
        seconds = _best(lambda: [store.upsert_cvs([r]) for r in per_row], repeat=1)
        per_row_rate = per_row_n / seconds
        rows.append((f"upsert, 1 call per row ({per_row_n} rows)", "rows/s", per_row_rate, "baseline"))

        batch = _synthetic_cvs(1000, dim)
        seconds = _best(lambda: store.upsert_cvs(batch), repeat=1)
        rate = len(batch) / seconds
        rows.append(("upsert, 1,000 rows in 1 call (new)", "rows/s", rate, f"{rate / per_row_rate:.2f}x"))
        seconds = _best(lambda: store.upsert_cvs(batch), repeat=1)
        rate = len(batch) / seconds
        rows.append(("upsert, 1,000 rows in 1 call (all exist)", "rows/s", rate, f"{rate / per_row_rate:.2f}x"))

        for start in range(1000, pool, 1000):
            store.upsert_cvs(_synthetic_cvs(min(1000, pool - start), dim, start=start))
        ids = store.list_cv_ids()
        total = len(ids)
        rng = np.random.default_rng(7)
        subset = [str(x) for x in rng.choice(ids, size=300, replace=False)]

        loop = _best(lambda: [store.get_cv(i) for i in subset], repeat=1)
        rows.append(("read 300, get_cv loop", "ms", 1000 * loop, "baseline"))

        def timed(label: str, fn: Callable[[], object], expect: int) -> None:
            got = fn()
            assert got.num_rows == expect, (label, got.num_rows, expect)  # type: ignore[attr-defined]
            seconds = _best(fn, repeat=3)
            rows.append((label, "ms", 1000 * seconds, f"{loop / seconds:.1f}x"))

        timed("read_cv_features 300, IN (...)", lambda: store.read_cv_features(subset, method="sql"), 300)
        timed("read_cv_features 300, arrow filter", lambda: store.read_cv_features(subset, method="arrow"), 300)
        timed(f"read_cv_features {total}, IN (...)", lambda: store.read_cv_features(ids, method="sql"), total)
        timed(f"read_cv_features {total}, arrow filter", lambda: store.read_cv_features(ids, method="arrow"), total)
        timed(f"read_cv_features all ({total})", lambda: store.read_cv_features(), total)
        store.optimize()
        timed(f"read_cv_features all ({total}), compacted", lambda: store.read_cv_features(), total)
        timed("read_cv_features 300, IN (...), compacted", lambda: store.read_cv_features(subset, method="sql"), 300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="shared data folder (or livecareer texts.jsonl)")
    parser.add_argument("--cvs", type=int, default=128, help="resume texts for the encoder timings")
    parser.add_argument("--pool", type=int, default=10_000, help="CV rows in the store for the read timings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-encoder", action="store_true")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    rows: list[tuple[str, str, float, str]] = []
    import torch

    load = os.getloadavg()[0]
    header = f"device={args.device} torch_threads={torch.get_num_threads()} cpus={os.cpu_count()} load1={load:.1f}"
    if not args.skip_encoder:
        texts = _load_texts(args.data, args.cvs)
        embedder = Embedder(device=args.device)
        bench_encoder(embedder, texts, rows)
        dim = embedder.dim
    else:
        dim = 384
    bench_store(args.pool, dim, rows)

    if args.json:
        print(json.dumps({"header": header, "rows": [
            {"measurement": label, "value": round(value, 3), "unit": unit, "vs_baseline": ratio}
            for label, unit, value, ratio in rows
        ]}, indent=2))
        return 0
    print(header)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'value':>10}  {'unit':<7}  vs baseline")
    for label, unit, value, ratio in rows:
        print(f"{label:<{width}}  {value:>10.1f}  {unit:<7}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
