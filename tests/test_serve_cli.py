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

from cvmatch_ray.serve.env import fate_sharing_haproxy, haproxy_binary

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


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> str:
    """Ctrl-C (or ``sig``), as a user would; the whole process group if it does not stop.
    The output ends with how the server ended (for an assertion's message)."""
    how = f"had exited ({proc.returncode}) before {sig.name}"
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=90)
            how = f"exited {proc.returncode} after {sig.name}"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            how = f"killed: still running 90 s after {sig.name}"
    return proc.communicate()[0] + f"\n[test: the server {how}]"


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


def _haproxy_pids_on(port: int) -> list[int]:
    """HAProxy processes whose command line names a config that holds ``port``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"haproxy") or b"-f" not in argv:
            continue
        config = argv[argv.index(b"-f") + 1].decode()
        try:
            if f":{port}" in Path(config).read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _start_serve(port: int, data_dir: Path, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RAY_ADDRESS": "local", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cvmatch = str(Path(sys.executable).with_name("cvmatch"))
    return subprocess.Popen(
        [cvmatch, "serve", "--port", str(port), "--db", str(data_dir)],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # a process group of its own, as a supervisor runs it
    )


@pytest.mark.slow
@pytest.mark.skipif(haproxy_binary() is None, reason="no HAProxy binary (ray[serve] brings one on Linux only)")
@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_a_server_killed_by_process_group_leaves_nothing_listening(tmp_path: Path, sig: signal.Signals) -> None:
    port = _free_port()
    first = _start_serve(port, tmp_path / "db", tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            _wait_healthy(client, first)
        assert _haproxy_pids_on(port), "the server runs no HAProxy on its port"
        os.killpg(first.pid, sig)
        first.wait(timeout=60)
        deadline = time.monotonic() + 60
        while _haproxy_pids_on(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _haproxy_pids_on(port) == [], "HAProxy outlived the server it belonged to"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()

    second = _start_serve(port, tmp_path / "db", tmp_path)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            _wait_healthy(client, second)
    finally:
        output = _stop(second, signal.SIGTERM)  # as a supervisor stops it: the way Ctrl-C does
    assert "ingress: haproxy" in output, output[-3000:]
    assert "stopping" in output, output[-3000:]
    deadline = time.monotonic() + 30
    while _haproxy_pids_on(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _haproxy_pids_on(port) == [], "SIGTERM left HAProxy running"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_haproxy_wrapper_dies_with_its_parent(tmp_path: Path) -> None:
    wrapper = fate_sharing_haproxy("/bin/sleep", str(tmp_path))
    assert wrapper is not None
    # A parent that starts the wrapped program, prints its pid and exits (the program
    # is given a moment to start, as Serve's proxy actor lives on).
    code = (
        "import subprocess, time\n"
        f"p = subprocess.Popen([{wrapper!r}, '300'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "time.sleep(1.0)\n"
        "print(p.pid)\n"
    )
    parent = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    pid = int(parent.stdout)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}/status").exists() else ""
        if "State:\tZ" in status:
            break
        time.sleep(0.05)
    alive = Path(f"/proc/{pid}/status").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the wrapped program outlived its parent"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_haproxy_wrapper_binds_stats_and_metrics_to_loopback(tmp_path: Path) -> None:
    # A stand-in "HAProxy" that prints the config it was started with.
    show = tmp_path / "show-config"
    show.write_text(f"#!{sys.executable}\nimport sys\nargs = sys.argv[1:]\nprint(open(args[args.index('-f') + 1]).read())\n")
    show.chmod(0o700)
    (tmp_path / "wrap").mkdir()
    wrapper = fate_sharing_haproxy(str(show), str(tmp_path / "wrap"))
    assert wrapper is not None
    config = tmp_path / "haproxy.cfg"  # the three bind lines of Serve's template
    config.write_text(
        "frontend prometheus\n    bind :9101\nfrontend http_frontend\n    bind 0.0.0.0:8000\n"
        "listen stats\n  bind *:8404\n  stats enable\n"
    )
    out = subprocess.run([wrapper, "-db", "-f", str(config)], capture_output=True, text=True, check=True, timeout=30).stdout
    assert "    bind 127.0.0.1:9101\n" in out and "  bind 127.0.0.1:8404\n" in out
    assert "    bind 0.0.0.0:8000\n" in out  # the API keeps the host it was given
