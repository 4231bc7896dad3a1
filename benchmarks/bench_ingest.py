"""Ingest of real PDFs: in-process path vs Ray Data pipeline, CVs/s and peak RSS.

    python benchmarks/bench_ingest.py ../shared/data [--limit 240] [--modes local ray] [--rounds N] [--niceness N]

Each mode runs in a fresh subprocess (so peak RSS is its own) on a fresh store, over the
LiveCareer PDFs in DATA_DIR/livecareer_resumes/pdf; ``--rounds`` repeats local, ray, local,
ray... (on a shared machine one pair says little). "total" is end to end, starting Ray
included; "ingest" leaves out starting Ray (a deployed cluster runs already) and counts
everything else: model and taxonomy loading, extraction, standardization, embedding and
LanceDB writes. "CPU s" is what the run's process tree used.

Both modes run at the same CPU priority, ``--niceness`` (default 0: the in-process path's
own): the whole process tree, Ray's workers and the stages' actors included, which otherwise
start at niceness 15 (Ray's default) and 19 (``background_niceness``) and, on a machine
shared with other jobs, get a small fraction of its CPU (what the comparison would measure).

The second table is the pipeline's own account of where the time went (``StageTimes``):
the wall seconds of each step summed over its batches, and for Ray Data over its workers
too, so Ray's stages can add up to more than its end-to-end time (they overlap). "rows" is
what the Ray stages and the driver spend turning Arrow rows into Python objects and back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit
from rich.table import Table


def _pdfs(data_dir: Path, limit: int) -> list[Path]:
    pdfs = sorted((data_dir / "livecareer_resumes" / "pdf").rglob("*.pdf"))
    if not pdfs:
        raise SystemExit(f"no PDFs under {data_dir / 'livecareer_resumes' / 'pdf'}")
    return pdfs[:limit]


def _cpu_seconds() -> float:
    """CPU seconds of this process and everything it started that still runs (Ray's own
    processes and workers): what a mode cost the machine, whatever else ran beside it."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, and of children waited for
    for p in me.children(recursive=True):
        try:
            total += sum(p.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


def _child(mode: str, files: list[str], db: str, niceness: int) -> dict:
    """Runs in the subprocess: ingest ``files`` one way and report timings."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from cvmatch_ray.config import Settings

    os.nice(niceness)  # inherited by everything this process starts (Ray's processes too)
    # Nothing lowers itself further: the Ray workers as on the project's nodes
    # (serve.env.ray_env), the stage actors by no background_niceness.
    os.environ["RAY_worker_niceness"] = "0"
    settings = Settings(data_dir=db, background_niceness=0)
    start = time.perf_counter()
    if mode == "local":
        from cvmatch_ray.local_ingest import LocalIngestor

        from cvmatch_ray.process import StageTimes

        ingestor = LocalIngestor.from_settings(settings)
        loaded = time.perf_counter()
        times = StageTimes()
        outcomes = ingestor.ingest(((f, Path(f).read_bytes()) for f in files), times=times)
        ok = sum(o.ok for o in outcomes)
    else:
        import ray

        from cvmatch_ray.pipelines.ray_ingest import run_ingest

        # A Ray of its own ("local"): a bare ray.init() would join whatever cluster `ray start`
        # last left on this machine, with its own CPUs and load.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        loaded = time.perf_counter()
        report = run_ingest(files, settings)
        ok = sum(o.ok for o in report.outcomes)
        times = report.times
    end = time.perf_counter()
    return {
        "cpu_s": _cpu_seconds(),
        "ok": ok,
        "seconds": end - start,
        "startup": loaded - start,
        "work": end - loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "stages": times.seconds,
    }


def _ingest_seconds(mode: str, r: dict) -> float:
    """Seconds of the ingest proper: all of it in process (model loading included), and on
    Ray all but starting Ray (a deployed cluster runs already; the actors' model loading
    counts)."""
    return r["seconds"] - (r["startup"] if mode == "ray" else 0.0)


def _run_table(runs: list[tuple[int, str, dict]], n: int) -> Table:
    table = Table(title=f"Ingest of {n} LiveCareer PDFs (fresh store per run)")
    for col in ("round", "mode", "stored", "total s", "Ray start s", "ingest s", "CVs/s", "CVs/s (total)", "CPU s",
                "RSS MB", "x local", "x local (total)"):
        table.add_column(col, justify="right")
    local = {i: r for i, mode, r in runs if mode == "local"}
    for i, mode, r in runs:
        base = local.get(i)
        ingest = _ingest_seconds(mode, r)
        table.add_row(
            str(i), mode, str(r["ok"]), f"{r['seconds']:.1f}", f"{r['startup']:.1f}" if mode == "ray" else "-",
            f"{ingest:.1f}", f"{n / ingest:.2f}", f"{n / r['seconds']:.2f}", f"{r['cpu_s']:.1f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{_ingest_seconds('local', base) / ingest:.2f}x" if base else "-",
            f"{base['seconds'] / r['seconds']:.2f}x" if base else "-",
        )
    return table


def _stage_table(runs: list[tuple[int, str, dict]], n: int) -> Table:
    """Seconds per step and run, from the pipeline's own timings."""
    from cvmatch_ray.process import STEPS

    steps = [*STEPS, *sorted({s for _, _, r in runs for s in r["stages"]} - set(STEPS))]
    table = Table(title=f"Where the time went, {n} PDFs (wall s per step, summed over batches and workers)")
    for col in ("round", "mode", *steps, "steps total", "end to end", "ms per CV (steps)"):
        table.add_column(col, justify="right")
    for i, mode, r in runs:
        stages = r["stages"]
        total = sum(stages.values())
        table.add_row(
            str(i), mode, *(f"{stages.get(s, 0.0):.2f}" for s in steps), f"{total:.1f}", f"{r['seconds']:.1f}",
            f"{1000 * total / n:.0f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--limit", type=int, default=240)
    parser.add_argument("--modes", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    parser.add_argument("--rounds", type=int, default=1, help="run the modes one after the other this many times")
    parser.add_argument("--niceness", type=int, default=0, help="CPU niceness of both modes (default 0)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.child:
        mode, files, db = json.loads(args.child)
        print(json.dumps(_child(mode, files, db, args.niceness)))
        return

    files = [str(p) for p in _pdfs(args.data_dir, args.limit)]
    load_at_start = round(os.getloadavg()[0], 1)
    runs: list[tuple[int, str, dict]] = []
    for i in range(1, args.rounds + 1):
        for mode in args.modes:
            with tempfile.TemporaryDirectory() as db:
                out = subprocess.run(
                    [sys.executable, __file__, str(args.data_dir), "--niceness", str(args.niceness),
                     "--child", json.dumps([mode, files, db])],
                    capture_output=True, text=True, check=True,
                )
                runs.append((i, mode, json.loads(out.stdout.strip().splitlines()[-1])))

    medians = {
        mode: {"ingest_s": round(statistics.median(_ingest_seconds(m, r) for _, m, r in runs if m == mode), 1),
               "total_s": round(statistics.median(r["seconds"] for _, m, r in runs if m == mode), 1)}
        for mode in args.modes
    }
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "160")  # rich's 80 columns cut every header short in a log
    emit([_run_table(runs, len(files)), _stage_table(runs, len(files))], as_json=args.json, medians=medians,
         load_average_at_start=load_at_start, load_average_at_end=round(os.getloadavg()[0], 1),
         cpus=os.cpu_count(), niceness=args.niceness)


if __name__ == "__main__":
    main()
