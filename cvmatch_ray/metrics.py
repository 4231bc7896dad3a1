"""Pipeline metrics exported through Ray's metrics agent (Prometheus / Grafana).

The metric objects are created lazily, once per process, the first time something is
recorded inside a Ray process; outside Ray every function is a no-op, so the same pipeline
code runs from the CLI or a unit test without a cluster.

Ray's exporter prefixes ``ray_`` and adds ``_total`` to counters, so Prometheus sees
``ray_cvmatch_cvs_processed_total{stage}``, ``ray_cvmatch_failures_total{stage,reason}``,
``ray_cvmatch_match_chunks_total`` and the histogram
``ray_cvmatch_stage_latency_seconds{stage}`` (docs/deployment.md says where to find them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import ray
from ray.util.metrics import Counter, Histogram

logger = logging.getLogger(__name__)

#: Latency buckets (seconds): from a cached rule-based parse to a long LLM call.
LATENCY_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]


@dataclass(frozen=True)
class _Metrics:
    processed: Counter
    failures: Counter
    latency: Histogram
    match_chunks: Counter


_lock = threading.Lock()
_metrics: _Metrics | None = None


def _get() -> _Metrics | None:
    """The process's metric objects, or None outside Ray.

    Why the guard: ray.util.metrics records into the Ray core worker's metrics agent. In a
    plain process there is no agent, so the points would pile up in a recorder nothing ever
    exports; and creating them at import would register metrics in every process that
    merely imports a pipeline module.
    """
    global _metrics
    if _metrics is not None:
        return _metrics
    if not ray.is_initialized():
        return None
    with _lock:
        if _metrics is None:
            _metrics = _Metrics(
                processed=Counter(
                    "cvmatch_cvs_processed",
                    description="Documents that finished a pipeline stage.",
                    tag_keys=("stage",),
                ),
                failures=Counter(
                    "cvmatch_failures",
                    description="Documents that failed a pipeline stage, by reason code.",
                    tag_keys=("stage", "reason"),
                ),
                latency=Histogram(
                    "cvmatch_stage_latency_seconds",
                    description="Wall time of one call of a pipeline stage (a batch or a document).",
                    boundaries=LATENCY_BOUNDARIES,
                    tag_keys=("stage",),
                ),
                match_chunks=Counter(
                    "cvmatch_match_chunks",
                    description="Match chunks scored.",
                ),
            )
    return _metrics


def _tag(value: str | Enum) -> str:
    # Tag values must be plain str; stages and reason codes are often str Enums.
    return str(value.value) if isinstance(value, Enum) else str(value)


def record_processed(stage: str | Enum, n: int = 1) -> None:
    """Count ``n`` documents that finished ``stage`` (``n <= 0`` records nothing)."""
    m = _get()
    if m is not None and n > 0:
        m.processed.inc(n, tags={"stage": _tag(stage)})


def record_failure(stage: str | Enum, code: str | Enum, n: int = 1) -> None:
    """Count ``n`` failures of ``stage`` with reason ``code`` (an error code, never a message)."""
    m = _get()
    if m is not None and n > 0:
        m.failures.inc(n, tags={"stage": _tag(stage), "reason": _tag(code)})


def observe_latency(stage: str | Enum, seconds: float) -> None:
    """Record how long one call of ``stage`` took.

    Raises:
        ValueError: ``seconds`` is negative (a clock mix-up, not a latency).
    """
    if seconds < 0:
        raise ValueError(f"latency must be >= 0, got {seconds}")
    m = _get()
    if m is not None:
        m.latency.observe(float(seconds), tags={"stage": _tag(stage)})


def record_match_chunks(n: int = 1) -> None:
    """Count ``n`` scored match chunks."""
    m = _get()
    if m is not None and n > 0:
        m.match_chunks.inc(n)


@contextmanager
def timed(stage: str | Enum) -> Iterator[None]:
    """Observe the latency of the ``with`` block under ``stage`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        observe_latency(stage, time.perf_counter() - start)
