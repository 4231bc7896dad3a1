"""The one reporter: how pipelines, workers and the API talk to the progress actor.

It holds the actor's handle and gets it again after the actor died for good (the new
actor reloads every job from LanceDB, and every report is idempotent, so sending one
again changes nothing). Upload steps from many uploads in flight are batched into as few
calls as the load allows.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.actor import ActorHandle

from cvmatch_ray.config import Settings
from cvmatch_ray.errors import ProcessingError
from cvmatch_ray.progress.actor import get_progress_actor
from cvmatch_ray.progress.models import ProgressError, StepReport, UploadStep
from cvmatch_ray.schemas import CVStats

logger = logging.getLogger(__name__)


class ProgressClient:
    """Calls on the progress actor that survive its death, sync or async."""

    def __init__(self, settings: Settings, actor: ActorHandle | None = None) -> None:
        """Args:
        settings: ``data_dir`` and ``ray_namespace`` name the actor.
        actor: a handle already got (else looked up, creating the actor if needed).
        """
        self._settings = settings
        self.actor = actor if actor is not None else get_progress_actor(settings)
        self._pending: list[tuple[StepReport, asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``ray.get(actor.method.remote(...))``, once more on a new actor if it died."""
        try:
            return ray.get(getattr(self.actor, method).remote(*args, **kwargs))
        except ray.exceptions.RayActorError:
            logger.warning("progress actor gone during %s; getting it again", method)
            self.actor = get_progress_actor(self._settings)
            return ray.get(getattr(self.actor, method).remote(*args, **kwargs))

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` for an event loop (the lookup of a new actor runs in a thread)."""
        try:
            return await getattr(self.actor, method).remote(*args, **kwargs)
        except ray.exceptions.RayActorError:
            logger.warning("progress actor gone during %s; getting it again", method)
            self.actor = await asyncio.to_thread(get_progress_actor, self._settings)
            return await getattr(self.actor, method).remote(*args, **kwargs)

    def report_step(
        self, job_id: str, step: UploadStep, stats: CVStats | None = None, *, error: ProcessingError | None = None
    ) -> asyncio.Future[None]:
        """Queue an upload step report (call from an event loop).

        A report goes out at once when no call is in flight; reports made while one is in
        flight go together in the next ``report_steps`` call. The future resolves once the
        report reached the actor, or failed to: a progress outage is logged, never raised
        into an upload.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failure = (error.message, error.code.value, error.stage.value) if error is not None else (None, None, None)
        self._pending.append((StepReport(job_id, step, stats, *failure), done))
        if self._sending is None:
            self._sending = asyncio.get_running_loop().create_task(self._send_steps())
        return done

    async def _send_steps(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self.acall("report_steps", [report for report, _ in batch])
                except (ProgressError, ray.exceptions.RayError) as e:
                    logger.warning("%d progress reports failed: %s", len(batch), type(e).__name__)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._sending = None
