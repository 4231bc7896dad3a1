"""Progress reports from a pipeline's driver, surviving the progress actor's death."""

from __future__ import annotations

import logging
from typing import Any

import ray

from cvmatch_ray.config import Settings
from cvmatch_ray.progress import JobProgress, get_progress_actor

logger = logging.getLogger(__name__)


class JobReporter:
    """Sends one job's reports to the progress actor and waits for each to be durable.

    If the actor was killed for good (``ray.kill(..., no_restart=True)``), the next call gets
    a new one, which reloads every job from LanceDB, and the report is sent again: chunk
    reports are idempotent by chunk index, so a repeat changes nothing.
    """

    def __init__(self, settings: Settings, job_id: str) -> None:
        self.settings = settings
        self.job_id = job_id
        self.actor = get_progress_actor(settings)

    def _call(self, method: str, *args: Any) -> JobProgress:
        try:
            return ray.get(getattr(self.actor, method).remote(self.job_id, *args))
        except ray.exceptions.RayActorError:
            logger.warning("job %s: progress actor gone; reconnecting", self.job_id)
            self.actor = get_progress_actor(self.settings)
            return ray.get(getattr(self.actor, method).remote(self.job_id, *args))

    def start(self) -> JobProgress:
        return self._call("start")

    def chunk_done(self, index: int, processed: int, failures: list[dict[str, str]]) -> JobProgress:
        return self._call("chunk_done", index, processed, failures)

    def finish(self, status, error: str | None = None) -> JobProgress:
        return self._call("finish", status, error)
