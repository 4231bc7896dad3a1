"""Scoring one JD against 300 to 100,000 stored CVs.

    python benchmarks/bench_scoring.py [--sizes 300 10000] [--repeat 5] [--db DIR] [--json]

For each size, on one store of synthetic rows (``--db`` keeps it for the next run), medians of
``--repeat`` runs:

- ``read``: the CVs' scoring columns from LanceDB (``read_cv_features``);
- ``score``: the vectorized scorer with full breakdowns for every CV, in the form a match job
  stores (``score_table`` + ``match_rows``), and its CVs/s;
- ``top 20 with evidence``: the 20 best results built in full from those rows, evidence and
  explanation included (what reading a job's results costs);
- ``every result with evidence``: ``rank_stored``, a full ``MatchResult`` for every CV;
- the per-pair Python loop (get each CV, ``score_pair``) up to ``--loop-max`` CVs, the
  baseline the speed-up is against.
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
from cvmatch_ray.match.results import match_rows, stored_batch
from cvmatch_ray.match.scoring import score_pair, score_table
from cvmatch_ray.storage.tables import Store


def _time(fn, repeat: int) -> float:
    fn()  # warm caches (file handles, dictionaries), as a long-running server would be
    return statistics.median(_once(fn) for _ in range(repeat))


def _once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop-max", type=int, default=300, help="Largest size the per-pair loop is timed at.")
    parser.add_argument("--db", default=None, help="store folder, kept and reused (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    table = Table(title="JD vs stored CVs (median of runs)")
    for col in ("CVs", "read (s)", "score (s)", "score CVs/s", "top 20 with evidence (s)",
                "every result with evidence (s)", "per-pair loop (s)", "loop / (read + score)"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or tmp, dim=384)
        if store.count_cvs() >= max(args.sizes) and store.list_jd_ids():
            jd_id, ids = store.list_jd_ids()[0], store.list_cv_ids()
        else:
            jd_id, ids = fill(store, max(args.sizes))
        jd = jd_features(store, jd_id)
        for n in args.sizes:
            subset = ids[:n]
            features = store.read_cv_features(subset)
            read = _time(lambda: store.read_cv_features(subset), args.repeat)
            score = _time(lambda: match_rows(score_table(jd, features)), args.repeat)
            rows = match_rows(score_table(jd, features))
            top = rows.take(score_table(jd, features).order()[:20])
            top20 = _time(lambda: stored_batch(jd, top, store.read_cv_features(top.column("cv_id").to_pylist())).results(),
                          args.repeat)
            full = _time(lambda: rank_stored(store, jd_id, subset, top_k=None), min(args.repeat, 2))

            def loop() -> None:
                results = []
                for cv_id in subset:
                    rec = store.get_cv(cv_id)
                    results.append(score_pair(CVFeatures.from_profile(cv_id, rec.profile, rec.vectors), jd))
                results.sort(key=lambda r: (-r.score, r.cv_id))

            slow = _time(loop, 1) if n <= args.loop_max else None
            table.add_row(f"{n:,}", f"{read:.3f}", f"{score:.3f}", f"{n / score:,.0f}", f"{top20:.3f}", f"{full:.2f}",
                          "-" if slow is None else f"{slow:.2f}", "-" if slow is None else f"{slow / (read + score):.0f}x")
    emit([table], as_json=args.json, load_average=round(os.getloadavg()[0], 1), cpus=os.cpu_count())


if __name__ == "__main__":
    main()
