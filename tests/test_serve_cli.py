"""``cvmatch serve``, the command a user runs: a process of its own, with its own local Ray.

The rest of the API tests deploy the app on the session's shared Ray through Serve's
proxy. This one runs the real command with its default ``--ingress auto``, which on Linux
finds the HAProxy binary that ``ray[serve]`` installs: requests go through HAProxy to the
API replicas' own HTTP servers, uploads are stored and processed, and Ctrl-C stops it all.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cvmatch_ray.serve.env import haproxy_binary

START_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(client: httpx.Client, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "cvmatch serve exited before answering"
        try:
            if client.get("/api/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"cvmatch serve did not answer /api/health within {START_TIMEOUT_S:.0f} s")


def _stop(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user would; the whole process group if it does not stop."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    return proc.communicate()[0]


@pytest.mark.slow
@pytest.mark.skipif(haproxy_binary() is None, reason="no HAProxy binary (ray[serve] brings one on Linux only)")
def test_cvmatch_serve_takes_uploads_through_haproxy(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        # A Ray of its own, not the session's head (which `ray.init()` would find).
        "RAY_ADDRESS": "local",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cvmatch = str(Path(sys.executable).with_name("cvmatch"))
    proc = subprocess.Popen(
        [cvmatch, "serve", "--port", str(port), "--db", str(tmp_path / "db")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    output = ""
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            _wait_healthy(client, proc)
            text = (
                "Jane Roe\njane.roe@example.com\n\nSkills\nPython, Kubernetes, PostgreSQL\n\n"
                "Experience\nBackend Engineer, Acme, 2019 - 2024\n- Built payment APIs in Python\n"
            )
            r = client.post(
                "/api/upload-cv", files={"file": ("cv.txt", text.encode())}, data={"background_processing": "true"}
            )
            assert r.status_code == 202, r.text
            cv_id = r.json()["cv_id"]
            deadline = time.monotonic() + 120
            progress: dict = {}
            while time.monotonic() < deadline:
                progress = client.get(f"/api/cv-upload-progress/{cv_id}").json()
                if progress["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.25)
            assert (progress["status"], progress["step"]) == ("succeeded", "done"), progress
            cv = client.get(f"/api/cvs/{cv_id}").json()
            assert {"Python", "Kubernetes"} <= {s["name"] for s in cv["profile"]["skills"]}
    finally:
        output = _stop(proc)
    assert "ingress: haproxy" in output, output[-3000:]
