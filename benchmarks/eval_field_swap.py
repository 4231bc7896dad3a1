"""Which parsed field moves the category tasks when the standardizer changes.

Usage::

    python benchmarks/eval_field_swap.py DATA_DIR [--cache-dir DIR] [--a crf] [--b none]

The pool is ingested twice through the project's steps (``eval_matching.CvmatchPool``),
once with field extractor ``--a`` and once with ``--b``. The postings are prepared once
(the JD side does not use the extractor). Then the ``a`` pool's feature table is scored
with the default ``ScoreWeights``, each time with one group of columns (skills, titles,
months, one section vector...) taken from the ``b`` pool for the same resumes: a group
whose swap moves nDCG@10 towards ``b`` explains part of the difference. Tasks A and B as
in ``eval_matching`` (nDCG@10, mean ± SE, all queries and each half). Swaps need not add
up: the components interact through the weighted mean.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

try:  # run as a script: benchmarks/ is on sys.path
    import eval_family as ef
    import eval_lib as el
    import eval_matching as em
except ImportError:  # imported as part of the repository
    from benchmarks import eval_family as ef
    from benchmarks import eval_lib as el
    from benchmarks import eval_matching as em

logger = logging.getLogger("eval_field_swap")

#: Column groups swapped one at a time; "all" is every feature column (the ``b`` pool itself).
SWAPS: dict[str, tuple[str, ...]] = {
    "skills": ("skills", "skill_lines"),
    "titles (occupations)": ("titles", "norm_titles"),
    "experience months": ("experience_months",),
    "roles": ("role_months", "role_titles", "role_occupations", "role_skills"),
    "education": ("education_rank",),
    "vec_title": ("vec_title",),
    "vec_skills": ("vec_skills",),
    "vec_experience": ("vec_experience",),
    "all three vectors": ("vec_title", "vec_skills", "vec_experience"),
    "months + vectors + titles": ("experience_months", "vec_title", "vec_skills", "vec_experience", "titles",
                                  "norm_titles"),
}


def swapped(a: pa.Table, b: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``a`` with ``columns`` replaced by ``b``'s, rows aligned on ``cv_id``."""
    row_of = {c: i for i, c in enumerate(b.column("cv_id").to_pylist())}
    b = b.take(pa.array([row_of[c] for c in a.column("cv_id").to_pylist()], pa.int64()))
    for c in columns:
        if c in a.column_names and c in b.column_names:
            a = a.set_column(a.column_names.index(c), c, b.column(c))
    return a


def task_ndcg(cvpool: em.CvmatchPool, table: pa.Table, queries: Sequence[el.Query], pool: el.CVPool,
              tie: np.ndarray, weights) -> list[el.QueryMetrics]:
    """Per-query metrics of ``queries`` scored against ``table`` (rows as ``cvpool.rows``)."""
    from cvmatch_ray.match.scoring import score_table

    ok = cvpool.rows >= 0
    out = []
    for q in queries:
        scores = np.full(len(pool.ids), -1.0)
        scores[ok] = score_table(cvpool._jds[q.text], table, weights).scores[cvpool.rows[ok]]
        out.append(el.query_metrics(q, scores, pool.categories, tie, k=10))
    return out


def _cell(metrics: Sequence[el.QueryMetrics]) -> str:
    v = np.array([m.ndcg for m in metrics])
    return f"{v.mean():.3f} ± {v.std(ddof=1) / np.sqrt(v.size):.3f}" if v.size > 1 else "n/a"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--a", default="crf", help="field extractor of the pool scored (default crf)")
    p.add_argument("--b", default="none", help="field extractor the swapped columns come from (default none)")
    p.add_argument("--ads-per-role", type=int, default=10)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cvmatch_ray.config import ScoreWeights, Settings

    pool = el.load_pool(args.data_dir)
    pools = {x: em.CvmatchPool(pool, args.cache_dir, Settings(field_extractor=x)) for x in (args.a, args.b)}
    a, b = pools[args.a], pools[args.b]
    tasks = {"A": el.load_google_jds(args.data_dir), "B": el.load_indeed_ads(args.data_dir, per_role=args.ads_per_role)}
    a.prepare_jds([q.text for qs in tasks.values() for q in qs])
    tie = el.tie_break_keys(pool.ids)
    weights = ScoreWeights()
    rows = [(f"`{args.a}` as is", a.table), *((f"`{args.a}`, {name} from `{args.b}`", swapped(a.table, b.table, cols))
                                             for name, cols in SWAPS.items())]
    rows.append((f"`{args.b}` (every feature column)", swapped(a.table, b.table, b.table.column_names)))
    lines = ["| scored table | A all | A dev | A held-out | B all | B dev | B held-out |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, table in rows:
        cells = []
        for qs in tasks.values():
            m = task_ndcg(a, table, qs, pool, tie, weights)
            cells += [_cell(m), *(_cell([x for x in m if ef.split_of(x.query_id) == h]) for h in (ef.DEV, ef.HELD_OUT))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
