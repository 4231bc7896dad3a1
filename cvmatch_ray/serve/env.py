"""The environment a Ray node needs for the API: read by Ray's processes when they start.

No Ray import here: a benchmark or launcher sets this environment before Ray starts.
"""

from __future__ import annotations

from typing import Literal

#: How HTTP reaches the API replica. ``proxy``: Serve's proxy actor (nothing to install).
#: ``haproxy``: HAProxy on the same port forwards straight to the ingress replica's own
#: HTTP server (Serve's direct ingress), skipping a hop through the proxy actor, with
#: Serve's throughput-optimized settings; about 3x the upload rate of ``proxy`` on a
#: 2-core machine (``benchmarks/bench_api.py``). Needs the ``haproxy`` binary.
IngressMode = Literal["proxy", "haproxy"]


def ray_env(ingress: IngressMode = "proxy") -> dict[str, str]:
    """Environment a Ray node needs for the API (set it where ``ray start`` runs).

    - ``RAY_worker_niceness=0``: Ray starts workers at niceness 15 by default; at 0 the
      ingress and the progress actor outrank the background replicas, which lower
      themselves by ``Settings.background_niceness`` (see ``priority.py``).
    - ``haproxy``: ``RAY_SERVE_ENABLE_HA_PROXY=1`` and ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``
      (Ray's own preset: a replica runs its user code on its main event loop instead of
      handing every request to a second thread, and buffers its access log).
    """
    env = {"RAY_worker_niceness": "0"}
    if ingress == "haproxy":
        env["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"
    return env
