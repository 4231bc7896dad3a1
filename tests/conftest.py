"""Shared fixtures: one Ray head per test session, the bundled embedding model, example files.

The Ray head is a real ``ray start --head`` (with the dashboard, so the Jobs API tests can
submit to it) holding one logical GPU, so fractional-GPU scheduling is exercised on a CPU
machine. Set ``CVMATCH_TEST_RAY_ADDRESS`` to reuse a head that is already running.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Nothing may be downloaded from a model hub: the bundled MiniLM loads from site-packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray's token auth stays on, as users run it: the session's own token, in the environment
# that every process the tests start inherits (the head, workers, `cvmatch serve`, job
# entrypoints), so no file in the home folder is written or needed.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
# The CPU build of vLLM (tests marked `vllm`), here and in the Ray workers the head starts.
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RayCluster:
    address: str  # GCS address for ray.init
    dashboard_url: str  # for the Jobs API
    temp_dir: str
    metrics_url: str | None = None  # the head's Prometheus endpoint (Ray's metrics agent)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory) -> Iterator[RayCluster]:
    """A real local Ray head (CPU + one logical GPU) that the whole session shares."""
    import ray

    existing = os.environ.get("CVMATCH_TEST_RAY_ADDRESS")
    if existing:
        ray.init(address=existing, namespace="cvmatch", log_to_driver=False)
        yield RayCluster(
            existing, os.environ.get("CVMATCH_TEST_DASHBOARD", "http://127.0.0.1:8265"), "",
            os.environ.get("CVMATCH_TEST_METRICS_URL"),
        )
        ray.shutdown()
        return

    port, dash, agent, metrics, runtime_env = (_free_port() for _ in range(5))
    # A short temp dir: Ray's socket paths must stay under the 107-byte AF_UNIX limit.
    temp_dir = f"/tmp/cvr{os.getpid()}"
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray_bin, "start", "--head", "--block",
            f"--port={port}", "--node-ip-address=127.0.0.1",
            "--num-cpus=4", "--num-gpus=1",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
            # Ports of our own, so that another Ray on this machine cannot take the agent's
            # (without its HTTP server the Jobs API answers "No available agent").
            f"--dashboard-agent-listen-port={agent}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--temp-dir={temp_dir}", "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Job entrypoints say `python ...`: let that be this interpreter (the venv's).
        env=os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            ray.init(address=address, namespace="cvmatch", log_to_driver=False)
            break
        except (ConnectionError, RuntimeError):
            if head.poll() is not None or time.monotonic() > deadline:
                head.kill()
                raise
            time.sleep(1)
    try:
        yield RayCluster(address, f"http://127.0.0.1:{dash}", temp_dir, f"http://127.0.0.1:{metrics}/metrics")
    finally:
        ray.shutdown()
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
        shutil.rmtree(temp_dir, ignore_errors=True)


#: The API's upload limit in tests: small, so that "too large" is cheap to send.
API_MAX_UPLOAD = 256 * 1024
API_TIMEOUT = 120.0


class Server:
    """The Serve application under test: its URL, data directory and an HTTP client."""

    def __init__(self, url: str, data_dir: Path, port: int) -> None:
        import httpx

        self.url = url
        self.data_dir = data_dir
        self.port = port
        # A namespace of its own: the progress actor is detached and outlives the module,
        # and one actor serves one data directory.
        self.namespace = f"api{port}"
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(API_TIMEOUT))
        self.overrides: dict = {}  # the module's SERVER_ARGS

    def args(self, **overrides):
        """The app's arguments (``AppArgs``), with ``overrides`` (``upload`` ones merged)."""
        from cvmatch_ray.serve.app import AppArgs

        overrides = self.overrides | overrides
        # Recovery rounds off unless a module asks for them: tests run them by hand.
        upload = {"recover_every_s": 0, **overrides.pop("upload", {})}
        return AppArgs(
            data_dir=str(self.data_dir), max_upload_bytes=API_MAX_UPLOAD, upload=upload,
            ray_namespace=self.namespace, **overrides,
        )


@pytest.fixture(scope="module")
def server(ray_cluster: RayCluster, tmp_path_factory, request: pytest.FixtureRequest) -> Iterator[Server]:
    """The real Serve app on a free loopback port with its own data directory, per module
    (with the module's ``SERVER_ARGS``, ``AppArgs`` overrides, if it has any)."""
    from ray import serve

    from cvmatch_ray.serve.app import APP_NAME, build_app

    data_dir = tmp_path_factory.mktemp("api_data")
    port = _free_port()
    # A Serve instance left by an earlier module (an app run on the default port) would
    # keep its proxy, and this app would never answer on ``port``.
    serve.shutdown()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    srv = Server(f"http://127.0.0.1:{port}", data_dir, port)
    srv.overrides = dict(getattr(request.module, "SERVER_ARGS", {}))
    serve.run(build_app(srv.args()), name=APP_NAME, route_prefix="/")
    try:
        yield srv
    finally:
        srv.client.close()
        serve.shutdown()


@pytest.fixture(scope="session")
def embedder():
    """The bundled all-MiniLM-L6-v2, loaded once per session."""
    from cvmatch_ray.embed import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES
