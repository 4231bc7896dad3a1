"""CPU priority of background work, so a busy node still answers HTTP at once.

Ray starts every worker at the same niceness (``RAY_worker_niceness``), so a replica
parsing PDFs and the replica answering ``/api/health`` get the same share of a busy CPU.
Processes that only do background work (the model deployments behind uploads, the Ray
Data stage actors) lower their own priority once, when they start, by
``Settings.background_niceness``: the kernel then runs the API ingress, the Serve proxy
and the progress actor first, and the background work takes whatever CPU is left. A
process can always lower its priority; raising it back needs privileges, which is why
only processes dedicated to background work do it, never a pooled task worker that could
later run something else.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

#: The lowest priority POSIX allows.
MAX_NICENESS = 19

_lowered = False


def lower_priority(increment: int) -> int | None:
    """Raise this process's niceness by ``increment`` (at most to 19), once per process.

    Linux keeps a niceness per thread (``os.nice`` changes only the calling one), so every
    thread the process has is lowered; threads started later inherit the value of the
    thread that starts them. Returns the niceness afterwards, or ``None`` where there is
    no niceness (Windows). Later calls in the same process change nothing.
    """
    global _lowered
    if not hasattr(os, "nice"):
        return None
    current = os.nice(0)
    if _lowered or increment <= 0:
        return current
    _lowered = True
    target = min(current + increment, MAX_NICENESS)
    for tid in _thread_ids():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, max(target, os.getpriority(os.PRIO_PROCESS, tid)))
        except (ProcessLookupError, PermissionError):
            continue  # the thread ended meanwhile
    logger.debug("background process %d: niceness %d -> %d", os.getpid(), current, target)
    return os.nice(0)


def _thread_ids() -> list[int]:
    """Ids of this process's threads (Linux), else just the process."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]
