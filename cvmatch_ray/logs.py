"""Where the package's log lines go in a Ray process.

Every module logs through ``logging.getLogger(__name__)``, under the ``cvmatch_ray``
logger. In a Ray worker nothing shows them: the root logger has no handler and keeps
WARNING, and Serve writes a replica's log file (``logs/serve/replica_*.log``, and stderr,
which Ray streams to the driver's terminal) from its own ``ray.serve`` logger only, which
does not propagate. :func:`route_app_logs` hands ``cvmatch_ray``'s records to those
handlers (in a replica) or to stderr (in a plain task), once per process.
"""

from __future__ import annotations

import logging
import sys

APP_LOGGER = "cvmatch_ray"
SERVE_LOGGER = "ray.serve"  # ray.serve._private.constants.SERVE_LOGGER_NAME


class _Forward(logging.Handler):
    """Hands each record to another logger's handlers (its level and filters apply)."""

    def __init__(self, target: logging.Logger) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def route_app_logs(target: str | None = SERVE_LOGGER, *, level: int = logging.INFO) -> None:
    """Send the package's records at ``level`` and above to ``target``'s handlers.

    Args:
        target: A logger whose handlers write the records: Serve's ``ray.serve`` in a
            replica (its file, its format with the replica id, its stderr); None for stderr
            (a Ray task, whose stderr Ray keeps in the worker's log file).
        level: The least level sent.

    Idempotent: a second call in the same process changes nothing.
    """
    app = logging.getLogger(APP_LOGGER)
    if any(getattr(h, "_cvmatch_route", False) for h in app.handlers):
        return
    if target is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s %(name)s: %(message)s"))
    else:
        handler = _Forward(logging.getLogger(target))
    handler._cvmatch_route = True  # type: ignore[attr-defined]
    app.addHandler(handler)
    app.setLevel(level)
    # The records are written by the handler above; the root logger would repeat
    # warnings on stderr (Python's last-resort handler).
    app.propagate = False


__all__ = ["APP_LOGGER", "route_app_logs"]
