"""API match jobs run by a driver that outlives whoever started it.

A match job started through the API is driven by a detached actor of its own
(``MatchJobDriver``, named after the job), not by a task of the ingress replica that took
the request: a task dies with its owner, so a job whose replica died stood ``running``
forever. The job's plan (JD, CV ids, chunk size) is written to the blob store before the
driver starts; the driver reads it, and when it is started again (Ray restarts it after
its process died, or the API's recovery round finds the job stalled and its driver gone),
it goes on from the chunks already reported. One driver per job: the name says so.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

import ray

from cvmatch_ray.config import Settings
from cvmatch_ray.logs import route_app_logs
from cvmatch_ray.pipelines.matching import create_match_job, run_match_job
from cvmatch_ray.progress import JobStatus, ProgressClient
from cvmatch_ray.storage.blobs import BlobStore

logger = logging.getLogger(__name__)


def _driver_name(job_id: str) -> str:
    return f"cvmatch-match-{job_id}"


def read_plan(blobs: BlobStore, job_id: str) -> dict[str, Any] | None:
    """The stored plan and request metadata (e.g. ``top_k``) of an API match job, from its
    tenant's ``blobs`` (None if it has none)."""
    raw = blobs.get("job", job_id)
    return json.loads(raw) if raw is not None else None


@ray.remote(num_cpus=0, max_restarts=-1)
class MatchJobDriver:
    """Runs one match job to its end in a thread, then removes itself."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        route_app_logs(None)  # to the worker's log file: no Serve logger here
        self._thread = threading.Thread(target=self._run, args=(settings, job_id), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings, job_id: str) -> None:
        try:
            plan = read_plan(BlobStore(settings.tenant_dir, settings.store.storage_options), job_id)
            if plan is None:
                logger.error("match job %s: no stored plan; ending it", job_id)
                ProgressClient(settings).call("finish", job_id, JobStatus.failed, "the job's plan was lost")
            else:
                run_match_job(
                    settings, job_id=job_id, jd_id=plan["jd_id"], cv_ids=plan["cv_ids"],
                    chunk_size=plan["chunk_size"], parallelism=plan.get("parallelism"),
                )
        except Exception:  # logged; the job stalls and the recovery round starts a driver again
            logger.exception("match job %s: driver failed", job_id)
            return
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def alive(self) -> bool:
        return self._thread.is_alive()


def start_driver(settings: Settings, job_id: str) -> None:
    """Start the job's driver unless it runs already (one per job, by name)."""
    MatchJobDriver.options(
        name=_driver_name(job_id),
        namespace=settings.ray_namespace,
        get_if_exists=True,
        lifetime="detached",
        # Escape any placement group the caller runs in.
        scheduling_strategy="DEFAULT",
    ).remote(settings, job_id)


def submit_match_job(
    settings: Settings,
    *,
    jd_id: str,
    cv_ids: Sequence[str] | None = None,
    chunk_size: int | None = None,
    parallelism: int | None = None,
    meta: dict[str, Any] | None = None,
) -> str:
    """Start a matching job over ``settings.tenant``'s data in the background on Ray and
    return its id at once.

    Args:
        meta: what a reader of the job needs to remember of the request (e.g. its
            ``top_k``), stored with the plan.

    Raises:
        UnknownDocument: the JD is not stored.
    """
    plan = create_match_job(settings, jd_id=jd_id, cv_ids=cv_ids, chunk_size=chunk_size)
    stored = {**(meta or {}), "jd_id": plan.jd_id, "cv_ids": plan.cv_ids, "chunk_size": plan.chunk_size,
              "parallelism": parallelism}
    BlobStore(settings.tenant_dir, settings.store.storage_options).put("job", plan.job_id, json.dumps(stored).encode())
    start_driver(settings, plan.job_id)
    return plan.job_id


def resume_stalled_match_jobs(settings: Settings, progress: ProgressClient, older_than_s: float) -> list[str]:
    """Start the driver again of every API match job that has not moved for ``older_than_s``.

    A live driver is left alone (``start_driver`` finds it by name); only jobs with a stored
    plan are API jobs (a CLI job's driver is its own process).

    Returns:
        The ids of the jobs whose driver was started again.
    """
    resumed = []
    for job_id in progress.call("stalled", "match", older_than_s):
        # The job's plan is in its tenant's data, and so is everything its driver reads.
        tenant_settings = settings.model_copy(update={"tenant": progress.call("get", job_id).tenant})
        blobs = BlobStore(tenant_settings.tenant_dir, tenant_settings.store.storage_options)
        if read_plan(blobs, job_id) is None:
            continue
        try:
            driver = ray.get_actor(_driver_name(job_id), namespace=settings.ray_namespace)
        except ValueError:
            driver = None  # gone for good
        if driver is not None:
            try:
                if ray.get(driver.alive.remote(), timeout=10):
                    continue  # slow, not dead
            except (ray.exceptions.RayError, TimeoutError):
                pass
            ray.kill(driver, no_restart=True)  # its thread died: a fresh one takes over
        logger.warning("match job %s stalled; starting its driver again", job_id)
        start_driver(tenant_settings, job_id)
        resumed.append(job_id)
    return resumed
