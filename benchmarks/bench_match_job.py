"""A matching job on Ray (chunked, parallel) vs the reference design's sequential per-pair loop.

    python benchmarks/bench_match_job.py [--sizes 300] [--rss-sizes 1000 10000] [--chunk-size 50]

Part 1, in one run on one store of synthetic CVs: the 300-CV job end to end (job creation,
chunks scored on Ray workers, results written, progress reported) next to the per-pair loop
(read each CV, score it, collect) in this process. Part 2: peak memory of a job at larger
sizes, sampled over the driver and every Ray worker while it runs: it should be set by the
chunks in flight, not by the number of CVs.
"""

from __future__ import annotations

import argparse
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
    """The same CVs read and scored in this process, every result built, nothing written."""
    start = time.perf_counter()
    jd = jd_features(store, jd_id)
    score_table(jd, store.read_cv_features(ids)).results()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300])
    parser.add_argument("--rss-sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, namespace="bench")

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp, ray_namespace="bench")
        store = Store(tmp, dim=DIM)
        jd_id, ids = fill(store, max(args.sizes + args.rss_sizes))
        _job(settings, jd_id, ids[:50], args.chunk_size)  # warm the workers, as a running cluster would be

        speed = Table(title="Matching job vs sequential per-pair loop (same store, same run)")
        for col in ("CVs", "Ray job, end to end (s)", "per-pair loop (s)", "speed-up"):
            speed.add_column(col, justify="right")
        for n in args.sizes:
            job = min(_job(settings, jd_id, ids[:n], args.chunk_size) for _ in range(3))
            loop = _sequential(store, jd_id, ids[:n])
            speed.add_row(f"{n:,}", f"{job:.2f}", f"{loop:.2f}", f"{loop / job:.1f}x")

        memory = Table(title=f"Peak RSS of a matching job (driver + Ray workers, chunks of {args.chunk_size})")
        # Summed worker RSS is left out: it counts every ray:: process on the machine,
        # however many Ray starts and reaps (and any other Ray instance's).
        for col in ("CVs", "job (s)", "in process (s)", "driver before (MB)", "driver peak (MB)",
                    "largest worker (MB)"):
            memory.add_column(col, justify="right")
        mb = 1024 * 1024
        for n in args.rss_sizes:
            before = RssSampler._rss("self")
            with RssSampler() as rss:
                seconds = _job(settings, jd_id, ids[:n], args.chunk_size)
            alone = _in_process(store, jd_id, ids[:n])
            memory.add_row(f"{n:,}", f"{seconds:.1f}", f"{alone:.1f}", f"{before / mb:.0f}", f"{rss.peak_driver / mb:.0f}",
                           f"{rss.peak_worker / mb:.0f}")
    emit([speed, memory], as_json=args.json, load_average_at_end=round(os.getloadavg()[0], 1), cpus=os.cpu_count())


if __name__ == "__main__":
    main()
