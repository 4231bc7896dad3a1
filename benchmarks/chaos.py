"""Chaos: bursts of uploads and a match job while replicas, the progress actor and the match
driver are killed on a schedule. Counts what was accepted, stored, lost and duplicated.

Each schedule runs against the same real Serve app (local Ray, LanceDB in a temp folder):
a burst of ``--n`` real CV files uploaded in the background at once (each schedule its own
files), the kills of that schedule while the burst is processed, then a match job over every
stored CV (chunk size 1) with the schedule's kills during the job. ``none`` is the baseline:
the same work with nothing killed, in the same run.

Kills are SIGKILL of a replica's process (as the kernel's OOM killer would) or ``ray.kill``
of the progress actor / the job's driver. Leases are shortened to ``--lease-s`` (production:
30 s) so that a run takes minutes; recovery takes the same steps either way.

    python benchmarks/chaos.py --cvs ../shared/data/livecareer_resumes/pdf [--n 40] [--json]

Lost = accepted (202) but neither stored nor failed for a reason of the document's own;
duplicated = more rows than CV ids in ``cvs``, or more match results than CVs in a job.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import ray

SCHEDULES = ("none", "extractor", "pipeline", "progress", "ingress+driver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: This run's Ray dashboard (the state API of the cluster it started, never "auto").
DASHBOARD: dict[str, str] = {}


def _replica_pids(deployment: str) -> list[int]:
    from ray.util.state import list_actors

    from cvmatch_ray.serve.app import APP_NAME

    return [
        a.pid
        for a in list_actors(address=DASHBOARD["url"], filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
        if a.class_name == f"ServeReplica:{APP_NAME}:{deployment}"
    ]


def _sigkill(deployment: str) -> str:
    deadline = time.monotonic() + 60
    while not (pids := _replica_pids(deployment)) and time.monotonic() < deadline:
        time.sleep(0.2)  # a replacement still starting: kill it once it is up
    killed = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass  # the state API still listed one that is gone
    return f"SIGKILL {deployment} x{killed}"


def _kill_progress(settings) -> str:
    from cvmatch_ray.progress import get_progress_actor

    ray.kill(get_progress_actor(settings), no_restart=False)
    return "ray.kill progress actor (restarts)"


def _kill_driver(settings, job_id: str) -> str:
    try:
        driver = ray.get_actor(f"cvmatch-match-{job_id}", namespace=settings.ray_namespace)
    except ValueError:
        return "driver already gone"
    ray.kill(driver, no_restart=True)
    return "ray.kill match driver (for good)"


def _upload_all(url: str, files: Sequence[Path]) -> list[httpx.Response]:
    def send(path: Path) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(30):  # a 503 asks to try again
                r = c.post(
                    "/api/upload-cv", files={"file": (path.name, path.read_bytes())},
                    data={"background_processing": "true"},
                )
                if r.status_code != 503:
                    return r
                time.sleep(1)
            return r

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(send, files))


def _wait_uploads(client: httpx.Client, cv_ids: Sequence[str], timeout_s: float) -> dict[str, dict]:
    """Every upload's last progress answer once all ended (or the timeout passed)."""
    last: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    pending = set(cv_ids)
    while pending and time.monotonic() < deadline:
        for cv_id in list(pending):
            try:
                r = client.get(f"/api/cv-upload-progress/{cv_id}")
            except httpx.HTTPError:
                continue  # an ingress replica being replaced
            if r.status_code == 200:
                last[cv_id] = r.json()
                if r.json()["step"] in ("done", "failed"):
                    pending.discard(cv_id)
        time.sleep(0.5)
    return last


def _wait_job(client: httpx.Client, job_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    body: dict = {}
    while time.monotonic() < deadline:
        try:
            r = client.get(f"/api/matching-progress/{job_id}")
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if r.status_code == 200:
            body = r.json()
            if body["status"] in ("succeeded", "failed", "cancelled"):
                return body
        time.sleep(0.2)
    return body


def run_schedule(name: str, url: str, settings, files: Sequence[Path], timeout_s: float) -> dict:
    from cvmatch_ray.storage.tables import Store

    client = httpx.Client(base_url=url, timeout=60)
    kills: list[str] = []
    t0 = time.monotonic()
    # What this schedule kills during the burst (the replicas once more after it).
    burst_kill: Callable[[], str] | None = {
        "extractor": lambda: _sigkill("Extractor"),
        "pipeline": lambda: _sigkill("UploadPipeline"),
        "progress": lambda: _kill_progress(settings),
    }.get(name)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sent = pool.submit(_upload_all, url, files)
        if burst_kill is not None:
            time.sleep(1.0)  # in the middle of the burst's processing
            kills.append(burst_kill())
        responses = sent.result()
    accepted = [r.json()["cv_id"] for r in responses if r.status_code == 202]
    refused = [r.status_code for r in responses if r.status_code != 202]
    if burst_kill is not None and name in ("extractor", "pipeline"):
        kills.append(burst_kill())  # once more, on the replacement, while the backlog is processed
    last_kill = time.monotonic()
    final = _wait_uploads(client, accepted, timeout_s)
    ingest_s = time.monotonic() - t0
    recover_s = time.monotonic() - last_kill
    stored = [c for c in accepted if final.get(c, {}).get("step") == "done"]
    failed = {c: final[c].get("error_code") for c in accepted if final.get(c, {}).get("step") == "failed"}
    own = {c for c, code in failed.items() if code not in (None, "internal_error", "poison_document")}
    lost = [c for c in accepted if c not in stored and c not in own]

    # A match job over every stored CV, with this schedule's kills during it.
    jd = client.post("/api/upload-jd", json={"text": "Accountant\nRequirements:\n- Accounting\n- Excel\n- 3+ years\n"})
    job_id = client.post("/api/match", json={"jd_id": jd.json()["jd_id"], "chunk_size": 1}).json()["job_id"]
    if name == "ingress+driver":
        time.sleep(0.5)
        kills.append(_sigkill("APIIngress"))
        kills.append(_kill_driver(settings, job_id))
    elif name == "progress":
        time.sleep(0.5)
        kills.append(_kill_progress(settings))
    job = _wait_job(client, job_id, timeout_s)
    store = Store.open(settings.tenant_dir, settings.store)
    matches = store.read_match_rows(job_id).column("cv_id").to_pylist()
    cvs = store.list_cv_ids()
    client.close()
    return {
        "schedule": name,
        "kills": kills,
        "sent": len(files),
        "accepted": len(accepted),
        "refused": refused,
        "stored": len(stored),
        "failed_own": len(own),
        "failed_other": len(failed) - len(own),
        "lost": len(lost),
        "duplicated_cvs": len(cvs) - len(set(cvs)),
        "ingest_s": round(ingest_s, 1),
        "recover_s": round(recover_s, 1),
        "job_status": job.get("status"),
        "job_total": job.get("total"),
        "job_results": len(matches),
        "duplicated_results": len(matches) - len(set(matches)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cvs", type=Path, required=True, help="a folder of real CV files (searched recursively)")
    parser.add_argument("--n", type=int, default=40, help="uploads per schedule")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    parser.add_argument("--lease-s", type=float, default=5.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ray import serve

    from cvmatch_ray.serve.app import APP_NAME, AppArgs, build_app

    files = sorted(p for p in args.cvs.rglob("*") if p.suffix.lower() in (".pdf", ".docx", ".txt"))
    need = args.n * len(args.schedules)
    if len(files) < need:
        print(f"need {need} files under {args.cvs}, found {len(files)}", file=sys.stderr)
        return 2
    data_dir = tempfile.mkdtemp(prefix="cvmatch-chaos-")
    app_args = AppArgs(
        data_dir=data_dir, upload={"recover_every_s": 0.5, "lease_s": args.lease_s, "max_attempts": 3},
        ray_namespace="chaos",
    )
    settings = app_args.to_settings()
    context = ray.init(namespace="chaos", log_to_driver=False, include_dashboard=True)
    DASHBOARD["url"] = f"http://{context.dashboard_url}"
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_args), name=APP_NAME, route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for i, name in enumerate(args.schedules):
            rows.append(run_schedule(name, url, settings, files[i * args.n : (i + 1) * args.n], args.timeout_s))
            print(f"{name}: done", file=sys.stderr)
    finally:
        serve.shutdown()
        ray.shutdown()
    base = next((r for r in rows if r["schedule"] == "none"), None)
    for r in rows:
        r["ingest_vs_none"] = round(r["ingest_s"] / base["ingest_s"], 2) if base and base["ingest_s"] else None
    if args.json:
        print(json.dumps({"n": args.n, "lease_s": args.lease_s, "rows": rows}, indent=2))
        return 0
    cols = ["schedule", "accepted", "stored", "failed_own", "failed_other", "lost", "duplicated_cvs", "ingest_s",
            "ingest_vs_none", "recover_s", "job_status", "job_total", "job_results", "duplicated_results"]
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    for r in rows:
        print(f"{r['schedule']}: {'; '.join(r['kills']) or 'nothing killed'}; refused: {r['refused'] or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
