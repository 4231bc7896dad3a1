"""A matching job on Ray (chunked, parallel) vs the same scoring in one process, and vs the
reference design's sequential per-pair loop.

    python benchmarks/bench_match_job.py [--sizes 300 10000 100000] [--chunk-size 50]
        [--db DIR] [--per-pair-max 1000] [--json]

In one run on one store of synthetic CVs (built in ``--db``, reused when it already holds
enough CVs), for each size:

- ``job_s``: the Ray job end to end: job created -> chunks scored on Ray workers -> every
  result stored and every chunk reported to the progress actor (best of 3 below 100,000 CVs);
- ``in_process_s``: the same CVs read and scored in this process, in the form a job stores
  (``read_cv_features`` + ``score_table`` + ``match_rows``; evidence is built when a result is
  read, in both);
- ``per_pair_s``: the per-pair loop (read each CV, ``score_pair``, collect: full results with
  evidence), up to ``--per-pair-max`` CVs (null above);
- ``peak_rss_mb``: during the job, the driver's peak RSS plus the largest Ray worker's (it
  should be set by the chunks in flight, not by the number of CVs).

``--json`` prints ``{"rows": [{"cvs", "job_s", "in_process_s", "per_pair_s", "peak_rss_mb"}],
...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time

import ray
from _report import emit
from _synthetic import fill
from rich.table import Table

from cvmatch_ray.config import Settings
from cvmatch_ray.match.features import CVFeatures
from cvmatch_ray.match.rank import jd_features
from cvmatch_ray.match.results import match_rows
from cvmatch_ray.match.scoring import score_pair, score_table
from cvmatch_ray.pipelines.matching import create_match_job, run_plan
from cvmatch_ray.storage.tables import Store

DIM = 384


def _sequential(store: Store, jd_id: str, ids: list[str]) -> float:
    start = time.perf_counter()
    jd = jd_features(store, jd_id)
    results = []
    for cv_id in ids:
        rec = store.get_cv(cv_id)
        results.append(score_pair(CVFeatures.from_profile(cv_id, rec.profile, rec.vectors), jd))
    results.sort(key=lambda r: (-r.score, r.cv_id))
    return time.perf_counter() - start


def _in_process(store: Store, jd_id: str, ids: list[str]) -> float:
    """The same CVs read and scored in this process, in the form a job stores; nothing written."""
    start = time.perf_counter()
    jd = jd_features(store, jd_id)
    match_rows(score_table(jd, store.read_cv_features(ids)))
    return time.perf_counter() - start


def _job(settings: Settings, jd_id: str, ids: list[str], chunk_size: int) -> float:
    start = time.perf_counter()
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=ids, chunk_size=chunk_size)
    run_plan(settings, plan)
    return time.perf_counter() - start


class RssSampler:
    """Peak RSS of this process (the job's driver) and of the largest Ray worker, every 20 ms.

    Worker processes come and go (Ray starts and reaps them), so their sum says more about
    how many are alive than about the job; the largest one is what a chunk costs.
    """

    def __init__(self) -> None:
        self.peak = 0
        self.peak_driver = 0
        self.peak_worker = 0
        self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss(pid: str) -> int:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> tuple[int, list[int]]:
        workers = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if f.read(5) == b"ray::":
                        workers.append(self._rss(pid))
            except OSError:  # the process ended meanwhile
                continue
        return self._rss("self"), workers

    def _total(self) -> int:
        driver, workers = self._sample()
        return driver + sum(workers)

    def _run(self) -> None:
        while not self._stop.is_set():
            driver, workers = self._sample()
            self.peak = max(self.peak, driver + sum(workers))
            self.peak_driver = max(self.peak_driver, driver)
            self.peak_worker = max([self.peak_worker, *workers])
            self.workers = max(self.workers, len(workers))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self.baseline = self._total()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _store(db: str, n: int) -> tuple[Store, str, list[str]]:
    """A store of at least ``n`` synthetic CVs and one JD at ``db`` (built when it has fewer)."""
    store = Store(db, dim=DIM)
    if store.count_cvs() >= n and store.list_jd_ids():
        return store, store.list_jd_ids()[0], store.list_cv_ids()
    jd_id, ids = fill(store, n)
    return store, jd_id, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 10_000])
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--db", default=None, help="store folder, kept and reused (default: a temporary one)")
    parser.add_argument("--per-pair-max", type=int, default=1000, help="largest size the per-pair loop runs at")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    # address="local": a cluster of its own, never one another process started on this machine.
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, namespace="bench")

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or tmp
        store, jd_id, ids = _store(db, max(args.sizes))
        settings = Settings(data_dir=db, ray_namespace="bench")
        _job(settings, jd_id, ids[:50], args.chunk_size)  # warm the workers, as a running cluster would be
        rows = []
        for n in args.sizes:
            with RssSampler() as rss:
                job = _job(settings, jd_id, ids[:n], args.chunk_size)
            if n < 100_000:
                job = min([job, *(_job(settings, jd_id, ids[:n], args.chunk_size) for _ in range(2))])
            alone = min(_in_process(store, jd_id, ids[:n]) for _ in range(2 if n < 100_000 else 1))
            loop = _sequential(store, jd_id, ids[:n]) if n <= args.per_pair_max else None
            rows.append({"cvs": n, "job_s": round(job, 3), "in_process_s": round(alone, 3),
                         "per_pair_s": None if loop is None else round(loop, 3),
                         "peak_rss_mb": round((rss.peak_driver + rss.peak_worker) / 2**20)})
    facts = {"chunk_size": args.chunk_size, "cpus": os.cpu_count(), "load_average_at_end": round(os.getloadavg()[0], 1)}
    if args.json:
        print(json.dumps({"rows": rows, **facts}, indent=2))
        return
    table = Table(title=f"Matching job on Ray vs in process vs per-pair loop (chunks of {args.chunk_size}, same store)")
    for col in ("CVs", "Ray job, end to end (s)", "in process (s)", "job / in process", "per-pair loop (s)",
                "job vs per-pair", "peak RSS (MB)"):
        table.add_column(col, justify="right")
    for r in rows:
        loop = r["per_pair_s"]
        table.add_row(f"{r['cvs']:,}", f"{r['job_s']:.2f}", f"{r['in_process_s']:.2f}",
                      f"{r['job_s'] / r['in_process_s']:.2f}x", "-" if loop is None else f"{loop:.2f}",
                      "-" if loop is None else f"{loop / r['job_s']:.1f}x faster", f"{r['peak_rss_mb']:,}")
    emit([table], as_json=False, **facts)


if __name__ == "__main__":
    main()
