"""The HTTP ingress deployment: builds the service from the model deployments' handles."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayError
from ray.serve.handle import DeploymentHandle

from cvmatch_ray.config import Settings
from cvmatch_ray.logs import route_app_logs
from cvmatch_ray.pipelines.match_driver import resume_stalled_match_jobs
from cvmatch_ray.progress import ProgressClient, ProgressError
from cvmatch_ray.serve.api import create_api
from cvmatch_ray.serve.service import APIService
from cvmatch_ray.storage.blobs import BlobStore, BlobStoreError
from cvmatch_ray.storage.tables import Store

logger = logging.getLogger(__name__)

INGRESS = "APIIngress"


@serve.deployment(name=INGRESS, num_replicas=2, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
@serve.ingress()
class APIIngress:
    """FastAPI in front of the ``UploadPipeline`` and the model deployments.

    The app is built per replica (``__serve_build_asgi_app__``) around an ``APIService``
    that holds this replica's store connection, progress actor handle and the handles.

    Two replicas by default: one event loop is one Python thread, which a burst of uploads
    keeps busy (parsing multipart, answering), so a second replica uses a second core.
    Replicas keep no state that the other needs: an upload's blob is created only if
    absent (``BlobStore.create``), so the same bytes sent to both are accepted once.
    """

    async def __init__(
        self,
        settings: Settings,
        extractor: DeploymentHandle,
        standardizer: DeploymentHandle,
        embedder: DeploymentHandle,
        pipeline: DeploymentHandle,
    ) -> None:
        route_app_logs()
        info: dict[str, Any] = await embedder.info.remote()
        provenance = await standardizer.provenance.remote()
        # Getting the actor blocks on a name lookup (and on the actor's first start).
        progress = await asyncio.to_thread(ProgressClient, settings)
        self.service = APIService(
            settings=settings,
            store=Store.open(settings.tenant_dir, settings.store, dim=int(info["dim"])),
            blobs=BlobStore(settings.tenant_dir, settings.store.storage_options),
            progress=progress,
            extractor=extractor,
            standardizer=standardizer,
            embedder=embedder,
            pipeline=pipeline,
            embedding_model=str(info["model"]),
            standardizer_backend=provenance.backend,
        )
        await self._index_lookups()
        self._recovery = asyncio.get_running_loop().create_task(self._recover_forever(settings.upload.recover_every_s))
        logger.info("API ready (encoder dim %d, standardizer %s)", info["dim"], provenance.backend)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.service)

    async def _index_lookups(self) -> None:
        """Id lookups (every upload asks whether its CV is stored) get their B-tree index, in
        every tenant's store opened here."""
        for store in self.service.tenant_stores():
            try:
                await asyncio.to_thread(store.ensure_lookup_indexes)
            except (OSError, RuntimeError, ValueError) as e:  # Lance maps its failures onto these
                logger.warning("lookup indexes not built: %s", e)

    async def _recover_forever(self, every_s: float) -> None:
        """At start and now and then: put back in line uploads that nobody is processing
        (see ``APIService.recover_uploads``), start again the drivers of stalled match jobs
        (``resume_stalled_match_jobs``), and index the id columns of tables that
        uploads created since."""
        if every_s <= 0:
            return
        while True:
            try:
                requeued = await self.service.recover_uploads()
                # Match jobs whose driver died: started again from their last chunk.
                resumed = len(await asyncio.to_thread(
                    resume_stalled_match_jobs, self.service.settings, self.service.progress,
                    self.service.settings.upload.lease_s,
                ))
            except (RayError, ProgressError, BlobStoreError, OSError, ValueError, RuntimeError) as e:
                logger.warning("recovery failed: %s", type(e).__name__)
            else:
                if requeued or resumed:
                    logger.info("put %d unfinished uploads back in line; resumed %d match jobs", requeued, resumed)
            await asyncio.sleep(every_s)
            await self._index_lookups()
