"""HTTP API latency and throughput, on loopback against the Serve application.

Usage::

    python benchmarks/bench_api.py DATA_PATH [--clients 16] [--uploads 100]
        [--bursts 4] [--match-cvs 10000] [--ingress auto|proxy|direct|haproxy]

``DATA_PATH`` is a folder of CV files (PDF, DOCX, text), e.g. the livecareer PDFs of the
shared dev data. The script starts a local Ray and the app on a free port, with its data in
a temporary folder (HTTP through Serve's proxy actor, the replica's own port, or HAProxy:
``--ingress``), and measures, each next to a baseline from the same run. The clients are
aiohttp sessions in this process with request bodies encoded before the clock starts; they
share the machine with the server, as the uploads' background processing does.

1. durable raw-bytes storage, the step a background upload waits for: a row in a LanceDB
   table (one merge commit per upload, what the old ``documents`` table cost) against a
   blob file (``storage/blobs.py``), 16 writers,
   and against groups of 16 blob files made durable by one barrier (the API's group commit);
2. upload latency p50/p99 with ``background_processing=true`` under 16 concurrent clients
   (target p50 <= 50 ms, p99 <= 250 ms), against ``false`` on other files of the same set;
   CVs processed per minute in both modes. The background files are sent in ``--bursts``
   bursts (each burst's bytes made new by a trailing comment, so nothing is a duplicate;
   every burst starts once the previous one is processed), and the latencies of all bursts
   are pooled: one burst of 100 uploads lasts a third of a second here, and its p50 moves by
   +-15 ms from burst to burst on this 2-core machine;
3. p99 of ``/api/health`` and ``/api/matching-progress`` while a matching job over
   ``--match-cvs`` synthetic stored CVs runs, against the same calls on an idle server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

logger = logging.getLogger("bench_api")

SUFFIXES = {".pdf", ".docx", ".txt", ".md", ".html", ".htm"}
JD_TEXT = """Senior Software Engineer

Requirements:
- 5+ years of experience in software development
- Python, SQL, Docker and Kubernetes
- Experience with AWS

Nice to have: Kafka, Spark, React

Responsibilities:
- Design, build and operate backend services
- Mentor engineers and review code
Bachelor's degree in Computer Science.
"""


# ---------------------------------------------------------------------- helpers

INGRESS_MODES = ("auto", "proxy", "direct", "haproxy")
#: Types whose bytes take a trailing comment line without changing the document.
TAGGABLE = {".pdf", ".txt", ".md", ".html", ".htm"}


def ingress_env(mode: str) -> dict[str, str]:
    """Environment of the Ray processes for each ingress mode (read when Ray starts):
    ``cvmatch serve``'s own for ``proxy`` and ``haproxy``; ``direct`` is Serve's direct
    ingress alone, the replica's port without HAProxy in front."""
    from cvmatch_ray.serve.env import ray_env

    if mode == "direct":
        return {**ray_env("proxy"), "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}
    return ray_env(mode)  # type: ignore[arg-type]


def client_session(url: str, timeout_s: float) -> aiohttp.ClientSession:
    """One simulated client: aiohttp, whose per-request CPU is a fraction of httpx's (the
    load generator shares the machine with the server it measures)."""
    return aiohttp.ClientSession(
        base_url=url, timeout=aiohttp.ClientTimeout(total=timeout_s), connector=aiohttp.TCPConnector(limit=1)
    )


def upload_request(path: Path, *, background: bool, copy: int = 0) -> tuple[bytes, dict[str, str]]:
    """The multipart body and headers of an upload of ``path``, encoded once up front so
    the timed loop measures the server, not the client building bodies.

    ``copy`` > 0 appends a comment line naming the copy (new bytes, so a new CV, with the
    same text; only for ``TAGGABLE`` types).
    """
    data = path.read_bytes()
    if copy:
        data += f"\n%cvmatch-bench copy {copy}\n".encode()
    request = httpx.Request(
        "POST", "http://x/api/upload-cv",
        files={"file": (path.name, data)},
        data={"background_processing": "true" if background else "false"},
    )
    return request.read(), {"content-type": request.headers["content-type"]}


def direct_ingress_url(app_name: str, host: str) -> str:
    """``http://host:port`` of the app's ingress replica's own HTTP server (direct ingress).

    The replica listens where Serve's proxy would (``host``), on a port Serve allocated.
    """
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    for group in ray.get(controller.get_target_groups.remote(app_name)):
        if str(getattr(group.protocol, "value", group.protocol)) == "HTTP" and group.targets:
            return f"http://{host}:{group.targets[0].port}"
    raise RuntimeError(f"no direct-ingress HTTP target for {app_name!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def list_files(root: Path) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no CV files ({', '.join(sorted(SUFFIXES))}) under {root}")
    return files


async def run_clients(
    n_clients: int, items: Sequence[object], call: Callable[[aiohttp.ClientSession, object], Awaitable[None]], url: str
) -> tuple[list[float], float]:
    """Run ``call`` on every item with ``n_clients`` concurrent clients; (latencies, wall)."""
    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    latencies: list[float] = []

    async def worker() -> None:
        async with client_session(url, 600.0) as client:
            # A client keeps its connection (an API client's pool does): it is opened
            # before the clock starts, so a latency is a request's, not a TCP handshake's.
            async with client.get("/api/health") as r:
                await r.read()
            await connected.wait()
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                await call(client, item)
                latencies.append(time.perf_counter() - start)

    connected = asyncio.Barrier(n_clients + 1)
    workers = [asyncio.ensure_future(worker()) for _ in range(n_clients)]
    await connected.wait()
    start = time.perf_counter()
    await asyncio.gather(*workers)
    return latencies, time.perf_counter() - start


async def hammer(url: str, paths: Sequence[str], n_clients: int, stop: Callable[[], bool], min_s: float = 2.0) -> dict[str, list[float]]:
    """Call ``paths`` round-robin from ``n_clients`` clients until ``stop()``; latencies per path."""
    out: dict[str, list[float]] = {p: [] for p in paths}
    began = time.monotonic()

    async def worker(i: int) -> None:
        async with client_session(url, 60.0) as client:
            k = i
            while not stop() or time.monotonic() - began < min_s:
                path = paths[k % len(paths)]
                k += 1
                start = time.perf_counter()
                async with client.get(path) as r:
                    await r.read()
                out[path].append(time.perf_counter() - start)
                if r.status != 200:
                    raise RuntimeError(f"{path}: HTTP {r.status}")

    await asyncio.gather(*(worker(i) for i in range(n_clients)))
    return out


# ---------------------------------------------------------- 1. raw-bytes storage


LANCE_PUT, BLOB_PUT, GROUP_COMMIT = "lancedb row (merge commit)", "blob file (fsync + rename)", "blob files, one barrier per group"


def bench_raw_storage(docs: Sequence[bytes], writers: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per-call latency of storing each document durably, ``writers`` at a time, and the
    CPU seconds per document (this process, all threads) of each way."""
    import pyarrow as pa

    from cvmatch_ray.ids import document_id
    from cvmatch_ray.storage import lance
    from cvmatch_ray.storage.blobs import BlobStore

    schema = pa.schema([pa.field("id", pa.string(), nullable=False,
                                 metadata={"lance-schema:unenforced-primary-key": "true"}),
                        pa.field("data", pa.large_binary(), nullable=False)])

    def put_row(table, data: bytes) -> None:
        # Insert-only merge on the id: the same bytes twice are one row.
        row = pa.table({"id": [document_id(data)], "data": [data]}, schema=schema)
        lance.upsert(table, "id", row, update=False)

    def put_group(blobs: BlobStore, group: Sequence[bytes]) -> None:
        # What the API does (``APIService._put_batch``): the uploads that arrive together
        # are written by one thread and made durable by one barrier.
        ids = [document_id(data) for data in group]
        for blob_id, data in zip(ids, group, strict=True):
            blobs.put("upload", blob_id, data, sync=False)
        blobs.sync(blobs.path("upload", blob_id) for blob_id in ids)

    latency: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        table = lance.connect(d).create_table("documents", schema=schema)
        put_row(table, b"warm-up")
        blobs, grouped = BlobStore(os.path.join(d, "single")), BlobStore(os.path.join(d, "grouped"))
        groups = [docs[i : i + writers] for i in range(0, len(docs), writers)]
        ways: dict[str, tuple[Callable[[Sequence[bytes]], None], list[Sequence[bytes]], int]] = {
            LANCE_PUT: (lambda data: put_row(table, data[0]), [[doc] for doc in docs], writers),
            BLOB_PUT: (lambda data: blobs.put("upload", document_id(data[0]), data[0]), [[doc] for doc in docs], writers),
            # One writer: each document waits for its whole group.
            GROUP_COMMIT: (lambda group: put_group(grouped, group), groups, 1),
        }
        for name, (put, items, threads) in ways.items():
            def timed(item: Sequence[bytes], put=put) -> list[float]:
                start = time.perf_counter()
                put(item)
                return [time.perf_counter() - start] * len(item)

            cpu_start = time.process_time()
            with ThreadPoolExecutor(threads) as pool:
                latency[name] = [t for ts in pool.map(timed, items) for t in ts]
            cpu[name] = (time.process_time() - cpu_start) / len(docs)
    return latency, cpu


# ----------------------------------------------------------------- 3. synthetic CVs


def synthetic_cvs(store, n: int, *, seed: int = 0, batch: int = 1000) -> None:
    """Write ``n`` synthetic CV rows (random skills, experience and unit vectors)."""
    from cvmatch_ray.match.features import cv_feature_columns
    from cvmatch_ray.schemas import CVProfile, CVStats, ExperienceEntry, Provenance, SkillMention
    from cvmatch_ray.storage.records import CVRecord

    rng = np.random.default_rng(seed)
    pool = ["Python", "SQL", "Docker", "Kubernetes", "AWS", "Kafka", "Spark", "React", "Java", "Go", "Linux", "Git"]
    provenance = Provenance(backend="synthetic")
    for start in range(0, n, batch):
        records = []
        for i in range(start, min(n, start + batch)):
            skills = sorted(set(rng.choice(pool, size=int(rng.integers(2, 8)), replace=False).tolist()))
            months = int(rng.integers(0, 240))
            profile = CVProfile(
                headline="Software Engineer",
                skills=[SkillMention(name=s) for s in skills],
                experience=[ExperienceEntry(title="Engineer", months=months, responsibilities=["Built things"])],
                total_experience_months=months,
            )
            v = rng.standard_normal((3, store.dim)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            records.append(
                CVRecord(
                    cv_id=f"{i:032x}",
                    filename=None,
                    text=f"synthetic cv {i}",
                    profile=profile,
                    stats=CVStats.of(profile),
                    provenance=provenance,
                    features=cv_feature_columns(profile, f"synthetic cv {i}"),
                    vectors=v,
                )
            )
        store.upsert_cvs(records)


# -------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_path", type=Path, help="folder of CV files (PDF, DOCX, text)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--uploads", type=int, default=100, help="uploads per mode (two disjoint sets of files)")
    parser.add_argument("--bursts", type=int, default=4, help="times the background uploads are sent (as new bytes)")
    parser.add_argument("--match-cvs", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=50)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--db", type=Path, default=None, help="data dir (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the text report")
    parser.add_argument(
        "--ingress", choices=INGRESS_MODES, default="auto",
        help="how HTTP reaches the API replicas: as `cvmatch serve` does (auto: HAProxy when a "
             "binary is found, else Serve's proxy), Serve's proxy actor, a replica's own port "
             "(direct ingress), or HAProxy in front of the replicas",
    )
    args = parser.parse_args(argv)
    os.environ.update(ingress_env(args.ingress))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import ray
    from ray import serve

    from cvmatch_ray.serve.app import APP_NAME, AppArgs, build_app
    from cvmatch_ray.serve.env import resolve_ingress
    from cvmatch_ray.storage.tables import Store

    files = list_files(args.data_path)
    single = 16  # uploads by one client alone: the no-contention baseline
    need = 2 * args.uploads + 2 + single
    if len(files) < need:
        raise SystemExit(f"need {need} files under {args.data_path}, found {len(files)}")
    warm, background_files, sync_files = files[:2], files[2 : 2 + args.uploads], files[2 + args.uploads : need - single]
    single_files = files[need - single : need]
    load_start = os.getloadavg()[0]

    raw, raw_cpu = bench_raw_storage([f.read_bytes() for f in files[: max(64, args.uploads)]], args.clients)

    tmp = tempfile.TemporaryDirectory(prefix="bench_api_")
    data_dir = str(args.db or tmp.name)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, namespace="cvmatch", log_to_driver=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    t0 = time.perf_counter()
    serve.run(build_app(AppArgs(data_dir=data_dir, upload={"recover_every_s": 0})), name=APP_NAME, route_prefix="/")
    startup = time.perf_counter() - t0
    if args.ingress == "direct":
        url = direct_ingress_url(APP_NAME, "127.0.0.1")
        print(f"direct ingress at {url}", flush=True)
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            for f in warm:  # loads the models and warms every code path once
                client.post("/api/upload-cv", files={"file": (f.name, f.read_bytes())}, data={"background_processing": "false"})
            dim = client.get("/api/health").json()["embedding_dim"]

        # ---- 2. uploads
        cv_ids: list[str] = []

        async def upload_background(client: aiohttp.ClientSession, f: object) -> None:
            body, headers = f  # type: ignore[misc]
            async with client.post("/api/upload-cv", data=body, headers=headers) as r:
                answer = await r.read()
            if r.status not in (200, 202):
                raise RuntimeError(f"upload: HTTP {r.status} {answer[:200]!r}")
            cv_ids.append(json.loads(answer)["cv_id"])

        async def upload_sync(client: aiohttp.ClientSession, f: object) -> None:
            body, headers = f  # type: ignore[misc]
            async with client.post("/api/upload-cv", data=body, headers=headers) as r:
                answer = await r.read()
            if r.status not in (200, 422):  # a refused document is an answer too
                raise RuntimeError(f"upload: HTTP {r.status} {answer[:200]!r}")

        async def wait_processed() -> None:
            # Uploads are processed about in the order they were accepted: asking from the
            # oldest on and stopping at the first unfinished one keeps the polling light
            # (asking for all 100 every round took CPU from the processing it measures).
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                pending = list(dict.fromkeys(cv_ids))
                while pending:
                    while pending:
                        r = await client.get(f"/api/cv-upload-progress/{pending[0]}")
                        if r.json()["step"] not in ("done", "failed"):
                            break
                        pending.pop(0)
                    await asyncio.sleep(0.2)

        async def background_phase(n_clients: int, batch: Sequence[Path], copy: int = 0) -> tuple[list[float], float, float]:
            cv_ids.clear()
            requests = [upload_request(f, background=True, copy=copy) for f in batch]
            start = time.perf_counter()
            lat, wall = await run_clients(n_clients, requests, upload_background, url)
            await wait_processed()
            return lat, wall, time.perf_counter() - start

        one_lat, _, _ = asyncio.run(background_phase(1, single_files))
        bg_lat, bg_walls, bg_dones, burst_p50s = [], [], [], []
        for burst in range(max(1, args.bursts)):
            batch = [f for f in background_files if burst == 0 or f.suffix.lower() in TAGGABLE]
            lat, wall, done_s = asyncio.run(background_phase(args.clients, batch, copy=burst))
            bg_lat += lat
            bg_walls.append(wall)
            bg_dones.append(done_s)
            burst_p50s.append(pct(lat, 50))
        sync_requests = [upload_request(f, background=False) for f in sync_files]
        sync_lat, sync_wall = asyncio.run(run_clients(args.clients, sync_requests, upload_sync, url))

        # ---- 3. health and progress under a matching job
        store = Store(data_dir, dim=dim)
        t1 = time.perf_counter()
        synthetic_cvs(store, args.match_cvs)
        synth_s = time.perf_counter() - t1
        with httpx.Client(base_url=url, timeout=600) as client:
            jd_id = client.post("/api/upload-jd", json={"text": JD_TEXT}).json()["jd_id"]
            small = client.post("/api/match", json={"jd_id": jd_id, "cv_ids": cv_ids[:5]}).json()["job_id"]
            while client.get(f"/api/matching-progress/{small}").json()["status"] not in ("succeeded", "failed"):
                time.sleep(0.1)
        paths_idle = ["/api/health", f"/api/matching-progress/{small}"]
        idle = asyncio.run(hammer(url, paths_idle, args.clients, stop=lambda: True, min_s=5.0))

        with httpx.Client(base_url=url, timeout=600) as client:
            job_start = time.perf_counter()
            job_id = client.post("/api/match", json={"jd_id": jd_id, "chunk_size": args.chunk_size}).json()["job_id"]
        done = threading.Event()

        def watch() -> None:
            with httpx.Client(base_url=url, timeout=600) as client:
                while client.get(f"/api/matching-progress/{job_id}").json()["status"] not in ("succeeded", "failed", "cancelled"):
                    time.sleep(0.05)
            done.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        busy = asyncio.run(hammer(url, ["/api/health", f"/api/matching-progress/{job_id}"], args.clients, stop=done.is_set))
        watcher.join()
        job_s = time.perf_counter() - job_start
        with httpx.Client(base_url=url, timeout=600) as client:
            final = client.get(f"/api/matching-progress/{job_id}").json()
    finally:
        serve.shutdown()
        ray.shutdown()
        tmp.cleanup()

    # ---- report
    lance = raw[LANCE_PUT]
    mode = args.ingress if args.ingress == "direct" else resolve_ingress(args.ingress)
    measured: list[dict] = []

    def row(name: str, values: Sequence[float], base: Sequence[float] | None) -> None:
        measured.append({
            "measurement": name, "p50_ms": round(1000 * pct(values, 50), 2), "p99_ms": round(1000 * pct(values, 99), 2),
            "n": len(values), "ratio_p50": round(pct(values, 50) / pct(base, 50), 2) if base else None,
        })

    row("raw bytes: LanceDB row per upload", lance, None)
    row("raw bytes: blob file (fsync + rename)", raw[BLOB_PUT], lance)
    row(f"raw bytes: blob files, {args.clients} per barrier", raw[GROUP_COMMIT], lance)
    row("upload-cv background_processing=false", sync_lat, None)
    row("upload-cv background_processing=true", bg_lat, sync_lat)
    row("upload-cv background_processing=true, 1 client", one_lat, bg_lat)
    health_idle = idle["/api/health"]
    prog_idle = idle[paths_idle[1]]
    row("GET /api/health, idle", health_idle, None)
    row(f"GET /api/health, during {args.match_cvs}-CV match job", busy["/api/health"], health_idle)
    row("GET /api/matching-progress, idle", prog_idle, None)
    row("GET /api/matching-progress, during the job", busy[f"/api/matching-progress/{job_id}"], prog_idle)
    bg_rate = 60 * len(bg_lat) / sum(bg_dones)
    sync_rate = 60 * len(sync_files) / sync_wall
    target = pct(bg_lat, 50) <= 0.050 and pct(bg_lat, 99) <= 0.250
    if args.json:
        print(json.dumps({
            "ingress": mode, "startup_s": round(startup, 1), "clients": args.clients, "files": len(files),
            "cpus": os.cpu_count(), "load_start": round(load_start, 1), "load_end": round(os.getloadavg()[0], 1),
            "latency": measured,
            "throughput_cvs_per_min": {"background": round(bg_rate, 1), "synchronous": round(sync_rate, 1),
                                       "ratio_bg_sync": round(bg_rate / sync_rate, 2)},
            "raw_cpu_ms": {name: round(1000 * sec, 3) for name, sec in raw_cpu.items()},
            "match_job": {"total": final["total"], "chunks": final["total_chunks"], "status": final["status"],
                          "seconds": round(job_s, 1)},
            "background_target_met": target,
        }, indent=2))
        return 0
    print(f"\nServe app up in {startup:.1f} s (ingress: {mode}); {args.clients} concurrent clients; "
          f"{len(files)} files in {args.data_path}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end\n")
    print(f"{'measurement':<52} {'p50 ms':>9} {'p99 ms':>9} {'n':>7} {'ratio p50':>10}")
    print("-" * 91)
    for m in measured:
        ratio = f"{m['ratio_p50']:.2f}x" if m["ratio_p50"] is not None else "baseline"
        print(f"{m['measurement']:<52} {m['p50_ms']:>9.1f} {m['p99_ms']:>9.1f} {m['n']:>7} {ratio:>10}")
    print()
    print(f"{'throughput':<52} {'CVs/min':>9}")
    print("-" * 62)
    print(f"{'background: accepted -> all done':<52} {bg_rate:>9.1f}")
    print(f"{'synchronous: request -> stored':<52} {sync_rate:>9.1f}   ratio bg/sync {bg_rate / sync_rate:.2f}x")
    print("\nraw bytes, CPU per document: " + ", ".join(f"{name} {1000 * sec:.2f} ms" for name, sec in raw_cpu.items()))
    print(f"background uploads: {len(bg_walls)} bursts of {len(background_files)}; accepting one took "
          f"{min(bg_walls):.2f}-{max(bg_walls):.2f} s, processing it {min(bg_dones):.1f}-{max(bg_dones):.1f} s; "
          f"p50 by burst: {', '.join(ms(x) for x in burst_p50s)} ms")
    print(f"match job: {final['total']} CVs in {final['total_chunks']} chunks, {final['status']} in {job_s:.1f} s "
          f"({final['seconds_per_chunk'] or 0:.3f} s/chunk); synthetic rows written in {synth_s:.1f} s")
    if final["status"] != "succeeded":
        reasons = sorted({f["reason"] for f in final["failures"]})[:3]
        print(f"match job error: {final['error']}; {final['failed']} CVs failed, e.g. {reasons}")
    print(f"background upload target (p50 <= 50 ms, p99 <= 250 ms): {'met' if target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
