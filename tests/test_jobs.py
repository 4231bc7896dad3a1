"""The bulk jobs, submitted through the Ray Jobs API to the session's real local head."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray.job_submission import JobStatus as RayJobStatus
from ray.job_submission import JobSubmissionClient

REPO = Path(__file__).resolve().parents[1]


def _run(client: JobSubmissionClient, entrypoint: str, timeout: float = 600, env: dict[str, str] | None = None) -> tuple[RayJobStatus, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO), "env_vars": env or {}})
            break
        except RuntimeError as e:
            # The head's dashboard agent comes up a little after the head itself.
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(2)
    while (status := client.get_job_status(job)) not in {RayJobStatus.SUCCEEDED, RayJobStatus.FAILED, RayJobStatus.STOPPED}:
        assert time.monotonic() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(1)
    return status, client.get_job_logs(job)


@pytest.fixture(scope="module")
def client(ray_cluster) -> JobSubmissionClient:
    return JobSubmissionClient(ray_cluster.dashboard_url)


def test_bulk_ingest_and_bulk_match_jobs_succeed(client, tmp_path, examples_dir):
    db = tmp_path / "db"
    inbox = tmp_path / "in"
    shutil.copytree(examples_dir / "cvs", inbox)
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.7 not really")

    # A namespace of its own: the session's other tests run progress actors for other stores.
    env = {"CVMATCH_RAY_NAMESPACE": f"jobs-{tmp_path.name}"}
    status, logs = _run(client, f"python jobs/bulk_ingest.py --input {inbox} --db {db} --export {tmp_path / 'ingest.csv'}", env=env)
    assert status == RayJobStatus.SUCCEEDED, logs[-3000:]
    assert "5 stored" in logs and "1 failed" in logs
    assert (tmp_path / "ingest.csv").read_text().count("\n") == 7  # header + 6 files

    jd = examples_dir / "jds" / "senior_python_backend.txt"
    out = tmp_path / "ranked.parquet"
    status, logs = _run(client, f"python jobs/bulk_match.py --jd {jd} --db {db} --chunk-size 2 --export {out}", env=env)
    assert status == RayJobStatus.SUCCEEDED, logs[-3000:]
    ranked = pq.read_table(out).to_pylist()
    assert len(ranked) == 5 and ranked[0]["rank"] == 1
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)


def test_a_job_that_fails_as_a_whole_exits_non_zero(client, tmp_path):
    status, logs = _run(
        client, f"python jobs/bulk_ingest.py --input {tmp_path / 'missing'} --db {tmp_path / 'db'}",
        env={"CVMATCH_RAY_NAMESPACE": f"jobs-{tmp_path.name}"},
    )
    assert status == RayJobStatus.FAILED
    assert "no such file or folder" in logs


def _readme_command(prefix: str) -> str:
    """The README's command line starting with ``prefix``, its trailing comment removed."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith(prefix):
            return line.split("  #", 1)[0].strip()
    raise AssertionError(f"README.md has no line starting with {prefix!r}")


def test_the_readmes_bulk_command_runs_as_written_with_token_auth(ray_cluster, tmp_path, examples_dir):
    # The README's `ray job submit` line, run by Ray's own CLI from the repo root, only its
    # placeholders filled in and its optional part left out; the head has token auth on
    # and the CLI finds the token as the README says (RAY_AUTH_MODE=token).
    command = _readme_command("ray job submit --working-dir . -- python jobs/bulk_ingest.py")
    assert "--input DIR_OR_URI --db URI [--export out.csv]" in command
    inbox = tmp_path / "in"
    shutil.copytree(examples_dir / "cvs", inbox)
    command = command.replace(" [--export out.csv]", "").replace("DIR_OR_URI", str(inbox)).replace("URI", str(tmp_path / "db"))
    env = {
        **os.environ, "RAY_ADDRESS": ray_cluster.dashboard_url, "RAY_AUTH_MODE": "token",
        "CVMATCH_RAY_NAMESPACE": f"jobs-{tmp_path.name}",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "5 stored" in proc.stdout and "succeeded" in proc.stdout.lower()
