"""The model deployments behind the API: extraction, standardization, embedding.

Each one wraps a core object that is loaded once per replica in ``__init__`` and runs one
step of ``cvmatch_ray.process`` with it, answering the step's typed outcome (a
``process.Failed`` for a refused document, never an exception); the upload worker and the
API ingress hold a ``DeploymentHandle`` to each and await ``handle.method.remote(...)``.
Resources (CPUs, GPU shares, replicas) are not fixed here: ``serve_config.yaml`` and
``serve_config.gpu.yaml`` set them per deployment, and the defaults below are the laptop's.

The standardizer and the embedder batch concurrent requests with ``@serve.batch``: the
encoder embeds all sections of all documents waiting in one forward pass, and an LLM
backend gets a batch of prompts at once. Batch sizes and waits can be changed live through
``user_config`` (``reconfigure``).

All three do background work for uploads: each replica lowers its CPU priority when it
starts (``priority.lower_priority``), so the ingress answers HTTP first on a busy node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ray import serve

from cvmatch_ray.config import Settings
from cvmatch_ray.logs import route_app_logs
from cvmatch_ray.embed import Embedder
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.process import (
    Extracted,
    Failed,
    Processed,
    RawDocument,
    Standardized,
    embed_batch,
    extract_batch,
    standardize_batch,
)
from cvmatch_ray.schemas import Provenance
from cvmatch_ray.standardize import make_standardizer

logger = logging.getLogger(__name__)

EXTRACTOR = "Extractor"
STANDARDIZER = "Standardizer"
EMBEDDER = "Embedder"


def _set_batching(method: Any, config: Mapping[str, Any]) -> None:
    """Apply ``max_batch_size`` / ``batch_wait_timeout_s`` from a ``user_config``."""
    if "max_batch_size" in config:
        method.set_max_batch_size(int(config["max_batch_size"]))
    if "batch_wait_timeout_s" in config:
        method.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))


@serve.deployment(name=EXTRACTOR, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=8)
class ExtractorDeployment:
    """Bytes -> text (PDF, DOCX, text, HTML); CPU only, stateless."""

    def __init__(self, settings: Settings) -> None:
        route_app_logs()
        lower_priority(settings.background_niceness)
        self._settings = settings

    def extract(self, document: RawDocument) -> Extracted | Failed:
        """The text of one document (``process.extract_batch``).

        A sync method: Serve runs it on the replica's thread pool, so a slow PDF does not
        stall the replica's event loop.
        """
        return extract_batch([document], self._settings)[0]


@serve.deployment(name=STANDARDIZER, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class StandardizerDeployment:
    """Text -> CV or JD profile with the backend ``settings.standardizer`` names."""

    def __init__(self, settings: Settings) -> None:
        route_app_logs()
        lower_priority(settings.background_niceness)
        self._standardizer = make_standardizer(settings)
        logger.info("standardizer %s ready", self._standardizer.provenance.backend)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Live batching settings from ``user_config``."""
        _set_batching(self._batch, config)

    def provenance(self) -> Provenance:
        """Backend, model and prompt version of the profiles this replica produces."""
        return self._standardizer.provenance

    async def standardize(self, item: Extracted | Failed) -> Standardized | Failed:
        """The profile of one CV or JD (``process.standardize_batch``), batched with the
        documents of concurrent requests."""
        return await self._batch(item)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batch(self, items: list[Extracted | Failed]) -> list[Standardized | Failed]:
        # A text that fails comes back as its Failed in place: one bad CV must not fail
        # the other uploads that happen to share its batch.
        return await asyncio.to_thread(standardize_batch, items, self._standardizer)


@serve.deployment(name=EMBEDDER, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class EmbedderDeployment:
    """Standardized documents -> records with their ``[3, dim]`` vectors, batching concurrent documents."""

    def __init__(self, settings: Settings) -> None:
        route_app_logs()
        lower_priority(settings.background_niceness)
        self._embedder = Embedder.from_settings(settings)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Live batching settings from ``user_config``."""
        _set_batching(self.embed, config)

    def info(self) -> dict[str, Any]:
        """``{"model", "dim", "device"}`` of the loaded encoder."""
        return {"model": self._embedder.model_name, "dim": self._embedder.dim, "device": self._embedder.device}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed(self, items: list[Standardized | Failed]) -> list[Processed | Failed]:
        """The record of one standardized document, its vectors in it (``process.embed_batch``).

        Callers send one document; ``@serve.batch`` hands this method every document
        waiting at that moment, so concurrent uploads share one encoder call.
        """
        return await asyncio.to_thread(embed_batch, items, self._embedder)
