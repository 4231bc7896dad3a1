"""The model deployments behind the API: extraction, standardization, embedding.

Each one wraps a core object that is loaded once per replica in ``__init__``; the API
ingress holds a ``DeploymentHandle`` to each and awaits ``handle.method.remote(...)``.
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

import numpy as np
from ray import serve

from cvmatch_ray.config import Settings
from cvmatch_ray.embed import Embedder
from cvmatch_ray.ingest import IngestError, Kind, extract_text
from cvmatch_ray.priority import lower_priority
from cvmatch_ray.schemas import CVProfile, JDProfile, Provenance
from cvmatch_ray.standardize.base import (
    StandardizationError,
    make_standardizer,
    standardize_cvs,
    standardize_jds,
)

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
        lower_priority(settings.background_niceness)
        self._settings = settings

    def extract(self, data: bytes, filename: str | None = None) -> tuple[str, list[str], str]:
        """``(text, flags, extractor)`` of one document.

        A sync method: Serve runs it on the replica's thread pool, so a slow PDF does not
        stall the replica's event loop.

        Raises:
            IngestError: stage ``extract``, with the extraction error's code and HTTP status.
        """
        return extract_text(data, filename=filename, settings=self._settings)


@serve.deployment(name=STANDARDIZER, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=32)
class StandardizerDeployment:
    """Text -> CV or JD profile with the backend ``settings.standardizer`` names."""

    def __init__(self, settings: Settings) -> None:
        lower_priority(settings.background_niceness)
        self._standardizer = make_standardizer(settings)
        logger.info("standardizer %s ready", self._standardizer.provenance.backend)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Live batching settings from ``user_config``."""
        _set_batching(self._batch, config)

    def provenance(self) -> Provenance:
        """Backend, model and prompt version of the profiles this replica produces."""
        return self._standardizer.provenance

    async def standardize(self, text: str, kind: Kind) -> tuple[CVProfile | JDProfile, Provenance]:
        """The profile of one CV or JD text, and the provenance to store with it.

        Raises:
            IngestError: stage ``standardize`` when no valid profile can be built.
        """
        result = await self._batch((kind, text))
        if isinstance(result, StandardizationError):
            raise IngestError("standardize", "standardization_failed", str(result))
        return result, self._standardizer.provenance

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _batch(
        self, items: list[tuple[Kind, str]]
    ) -> list[CVProfile | JDProfile | StandardizationError]:
        # A text that fails comes back as its error in place: one bad CV must not fail the
        # other uploads that happen to share its batch.
        return await asyncio.to_thread(self._standardize_many, items)

    def _standardize_many(self, items: list[tuple[Kind, str]]) -> list[CVProfile | JDProfile | StandardizationError]:
        out: list[CVProfile | JDProfile | StandardizationError | None] = [None] * len(items)
        for kind, fn in (("cv", standardize_cvs), ("jd", standardize_jds)):
            idx = [i for i, (k, _) in enumerate(items) if k == kind]
            if idx:
                for i, result in zip(idx, fn(self._standardizer, [items[i][1] for i in idx])):
                    out[i] = result
        return out  # type: ignore[return-value]


@serve.deployment(name=EMBEDDER, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class EmbedderDeployment:
    """Section texts -> ``[3, dim]`` vectors, batching concurrent documents."""

    def __init__(self, settings: Settings) -> None:
        lower_priority(settings.background_niceness)
        self._embedder = Embedder.from_settings(settings)

    def reconfigure(self, config: Mapping[str, Any]) -> None:
        """Live batching settings from ``user_config``."""
        _set_batching(self.embed_sections, config)

    def info(self) -> dict[str, Any]:
        """``{"model", "dim", "device"}`` of the loaded encoder."""
        return {"model": self._embedder.model_name, "dim": self._embedder.dim, "device": self._embedder.device}

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def embed_sections(self, documents: list[dict[str, str]]) -> list[np.ndarray]:
        """Vectors of one document's section texts (see ``Embedder.embed_sections``).

        Callers send one document; ``@serve.batch`` hands this method every document
        waiting at that moment, so concurrent uploads share one encoder call.

        Raises:
            IngestError: stage ``embed`` if the encoder fails (for the whole batch).
        """
        try:
            vectors = await asyncio.to_thread(self._embedder.embed_sections, documents)
        except (RuntimeError, ValueError) as e:
            raise IngestError("embed", "embedding_failed", str(e), http_status=500) from e
        return list(vectors)
