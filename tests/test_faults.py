"""Fault tests against the real Serve app: an accepted upload survives the death of the
replicas that process it and of the progress actor, and the API fails closed when the
progress actor cannot be had (issue "Integrity and security", rows 1-3).

Replicas are stopped with SIGSTOP (so that a call is certainly in flight) and then
killed with SIGKILL, as the kernel's OOM killer would. Run alone with ``-m faults``.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
import ray

from cvmatch_ray.progress import ACTOR_NAME, get_progress_actor
from cvmatch_ray.progress.actor import ProgressActor
from cvmatch_ray.serve.app import APP_NAME
from test_api import cv_text, pdf_bytes, upload, wait_upload

pytestmark = pytest.mark.faults

# Short leases and frequent recovery rounds, so that what takes seconds here takes the
# same steps as in production (lease 30 s, a round every 10 s).
LEASE_S = 4.0
SERVER_ARGS = {"upload": {"recover_every_s": 0.5, "lease_s": LEASE_S, "max_attempts": 3}}


@pytest.fixture(scope="module")
def client(server) -> httpx.Client:
    return server.client


def _replica_pids(ray_cluster, deployment: str) -> list[int]:
    from ray.util.state import list_actors

    return [
        a.pid
        for a in list_actors(address=ray_cluster.dashboard_url, filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
        if a.class_name == f"ServeReplica:{APP_NAME}:{deployment}"
    ]


def _wait_step(client: httpx.Client, cv_id: str, step: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/cv-upload-progress/{cv_id}").json()
        if body.get("step") == step:
            return body
        time.sleep(0.02)
    raise AssertionError(f"upload {cv_id} never reached {step}: {body}")


def _job(server, job_id: str):
    return ray.get(get_progress_actor(server.args().to_settings()).get.remote(job_id))


def test_an_extractor_killed_with_the_upload_in_hand_loses_nothing(ray_cluster, server, client) -> None:
    # One upload first: Serve's router then knows the replica's queue length (for 10 s)
    # and sends the next call straight to it, stopped or not.
    warm = upload(client, pdf_bytes(cv_text(300), title="warm-up"))
    assert wait_upload(client, warm.json()["cv_id"])[0]["status"] == "succeeded"
    [pid] = _replica_pids(ray_cluster, "Extractor")
    os.kill(pid, signal.SIGSTOP)  # the call below is certainly in flight when it dies
    try:
        r = upload(client, pdf_bytes(cv_text(301), title="in flight"))
        assert r.status_code == 202, r.text
        cv_id = r.json()["cv_id"]
        _wait_step(client, cv_id, "extracting")
    finally:
        os.kill(pid, signal.SIGKILL)
    final, _ = wait_upload(client, cv_id)
    # Serve may hand the call to the new replica itself, or the worker gets ActorDiedError
    # and puts the upload back in line: either way it is stored, never dropped.
    assert (final["status"], final["step"]) == ("succeeded", "done"), final
    assert client.get(f"/api/cvs/{cv_id}").status_code == 200


def test_a_pipeline_replica_killed_holding_claims_loses_nothing(ray_cluster, server, client) -> None:
    [pid] = _replica_pids(ray_cluster, "UploadPipeline")
    os.kill(pid, signal.SIGSTOP)
    try:
        accepted = [upload(client, pdf_bytes(cv_text(310 + i), title=f"claimed {i}")) for i in range(3)]
        assert [r.status_code for r in accepted] == [202] * 3
        cv_ids = [r.json()["cv_id"] for r in accepted]
        # The stopped replica's long poll takes them: running, held by a worker that
        # will never report again.
        deadline = time.monotonic() + 30
        while any(client.get(f"/api/cv-upload-progress/{c}").json()["status"] != "running" for c in cv_ids):
            assert time.monotonic() < deadline, "the stopped replica never claimed the uploads"
            time.sleep(0.05)
    finally:
        os.kill(pid, signal.SIGKILL)
    for cv_id in cv_ids:
        # Their leases run out, the recovery puts them back, the new replica takes them.
        final, _ = wait_upload(client, cv_id, timeout=180)
        assert (final["status"], final["step"]) == ("succeeded", "done"), final
        assert _job(server, final["job_id"]).attempts == 2


def test_progress_actor_restarted_after_a_burst_loses_no_upload(server, client) -> None:
    settings = server.args().to_settings()
    accepted = [upload(client, pdf_bytes(cv_text(400 + i), title=f"burst {i}")) for i in range(40)]
    assert [r.status_code for r in accepted] == [202] * 40
    # Killed before its next write: the jobs it had not written yet are gone with it.
    ray.kill(get_progress_actor(settings), no_restart=False)
    started = time.monotonic()
    for r in accepted:
        final, _ = wait_upload(client, r.json()["cv_id"], timeout=180)
        assert (final["status"], final["step"]) == ("succeeded", "done"), final
    # Within a few leases, not the old 10-minute stale timer.
    assert time.monotonic() - started < 120


def _kill_for_good(settings) -> None:
    ray.kill(get_progress_actor(settings), no_restart=True)
    _wait_name_free(settings)


def _wait_name_free(settings) -> None:
    """Wait until no actor holds the progress actor's name (``ray.kill`` is asynchronous)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            ray.get_actor(ACTOR_NAME, namespace=settings.ray_namespace)
        except ValueError:
            return
        assert time.monotonic() < deadline, "the progress actor is still registered"
        time.sleep(0.1)


def test_progress_actor_killed_for_good_is_got_again_never_twice(server, client) -> None:
    settings = server.args().to_settings()
    r = upload(client, pdf_bytes(cv_text(501), title="before"))
    before, _ = wait_upload(client, r.json()["cv_id"])
    _kill_for_good(settings)
    # The next call gets it again (reloaded from LanceDB): the earlier job is still there.
    assert client.get("/api/health").status_code == 200
    assert client.get(f"/api/cv-upload-progress/{before['cv_id']}").json()["job_id"] == before["job_id"]
    after = upload(client, pdf_bytes(cv_text(502), title="after"))
    assert after.status_code == 202
    final, _ = wait_upload(client, after.json()["cv_id"])
    assert final["status"] == "succeeded"
    # A match job's driver uses the same actor the API reads.
    jd = client.post("/api/upload-jd", json={"text": "Python developer\nRequirements:\n- Python\n- SQL\n"})
    assert jd.status_code in (200, 201), jd.text
    job = client.post("/api/match", json={"jd_id": jd.json()["jd_id"], "cv_ids": [final["cv_id"], before["cv_id"]]})
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 60
    while (p := client.get(f"/api/matching-progress/{job.json()['job_id']}")).json()["status"] != "succeeded":
        assert p.status_code == 200 and time.monotonic() < deadline, p.text
        time.sleep(0.1)


def test_without_a_progress_actor_uploads_and_health_answer_503(server, client) -> None:
    settings = server.args().to_settings()
    _kill_for_good(settings)
    # Another store's actor took the name: this app's actor cannot be had.
    squatter = ProgressActor.options(
        name=ACTOR_NAME, namespace=settings.ray_namespace, lifetime="detached", num_cpus=0
    ).remote(str(server.data_dir / "elsewhere"))
    ray.get(squatter.data_dir.remote())
    try:
        health = client.get("/api/health")
        assert health.status_code == 503 and "progress tracker is unavailable" in health.json()["detail"]
        r = upload(client, pdf_bytes(cv_text(601), title="refused"))
        assert r.status_code == 503 and "upload queue is unavailable" in r.json()["detail"], r.text
    finally:
        ray.kill(squatter, no_restart=True)
    _wait_name_free(settings)
    # Once the name is free again, the same file is accepted and processed.
    r = upload(client, pdf_bytes(cv_text(601), title="refused"))
    assert r.status_code == 202, r.text
    final, _ = wait_upload(client, r.json()["cv_id"])
    assert final["status"] == "succeeded"

