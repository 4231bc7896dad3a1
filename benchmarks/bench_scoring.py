"""Scoring one JD against 300 and 10,000 stored CVs, store read included.

    python benchmarks/bench_scoring.py [--sizes 300 10000] [--repeat 5]

Compares the vectorized scorer (one projected LanceDB read + numpy) with the per-pair Python
loop (get each CV, score_pair) measured in the same run on the same store. Synthetic rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _report import emit
from _synthetic import fill
from rich.table import Table

from cvmatch_ray.match.features import CVFeatures
from cvmatch_ray.match.rank import jd_features, rank_stored
from cvmatch_ray.match.scoring import score_pair
from cvmatch_ray.storage.tables import Store


def _time(fn, repeat: int) -> float:
    fn()  # warm caches (file handles, dictionaries), as a long-running server would be
    return statistics.median(_once(fn) for _ in range(repeat))


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop-max", type=int, default=300, help="Largest size the per-pair loop is timed at.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    table = Table(title="JD vs stored CVs (median of runs, store read included)")
    for col in ("CVs", "vectorized (s)", "CVs/s", "per-pair loop (s)", "speed-up"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp, dim=384)
        jd_id, ids = fill(store, max(args.sizes))
        for n in args.sizes:
            subset = ids[:n]
            vec = _time(lambda: rank_stored(store, jd_id, subset, top_k=None), args.repeat)

            def loop() -> None:
                jd = jd_features(store, jd_id)
                results = []
                for cv_id in subset:
                    rec = store.get_cv(cv_id)
                    results.append(score_pair(CVFeatures.from_profile(cv_id, rec.profile, rec.vectors), jd))
                results.sort(key=lambda r: (-r.score, r.cv_id))

            if n <= args.loop_max:
                slow = _time(loop, 1)
                table.add_row(f"{n:,}", f"{vec:.3f}", f"{n / vec:,.0f}", f"{slow:.2f}", f"{slow / vec:.0f}x")
            else:
                table.add_row(f"{n:,}", f"{vec:.3f}", f"{n / vec:,.0f}", "-", "-")
    emit([table], as_json=args.json, load_average=round(os.getloadavg()[0], 1), cpus=os.cpu_count())


if __name__ == "__main__":
    main()
