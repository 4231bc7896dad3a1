"""Resource options of every Ray stage, from one pure function of the settings.

Keeping them here, and pure, means a CPU-only test can check what the GPU stages would ask
for (``num_gpus=0.25`` for four embedding actors sharing one GPU, say) without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cvmatch_ray.config import Settings


@dataclass(frozen=True)
class StageOptions:
    """How one stage runs: per-worker resources, pool size and batch size."""

    num_cpus: float
    num_gpus: float = 0.0
    actors: int | None = None  # None: stateless tasks; n: a fixed pool of n actors
    batch_size: int = 16
    tasks: int | None = None  # stateless tasks at once; None: as many as the resources allow
    #: Custom Ray resources (``Settings.stage_resources``): the nodes the stage may run on.
    resources: dict[str, float] = field(default_factory=dict)

    def map_batches_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Dataset.map_batches``."""
        import ray.data  # local: keeps this module importable (and testable) without Ray Data

        kwargs: dict[str, Any] = {"num_cpus": self.num_cpus, "batch_size": self.batch_size}
        if self.num_gpus:
            kwargs["num_gpus"] = self.num_gpus
        if self.resources:
            kwargs["resources"] = dict(self.resources)
        if self.actors is not None:
            kwargs["compute"] = ray.data.ActorPoolStrategy(size=self.actors)
        return kwargs

    def remote_options(self) -> dict[str, Any]:
        """Options for ``ray.remote(...).options(...)``."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        return options


def _standardize_options(settings: Settings) -> StageOptions:
    if settings.standardizer == "vllm":
        # One engine per actor, on a GPU share (0.5 = two engines per GPU, with
        # llm_gpu_memory_utilization set to match); with tensor parallelism an engine
        # spans several GPUs. Larger batches keep vLLM's continuous batching busy.
        return StageOptions(
            num_cpus=1,
            num_gpus=settings.llm.num_gpus * settings.llm.tensor_parallel_size,
            actors=settings.llm.engines,
            batch_size=max(settings.ingest_batch_size, 64),
        )
    # The rule-based standardizer (and the OpenAI client) load the taxonomy once per actor.
    # Half a CPU each: on a 2-core laptop two whole-CPU actors would leave no CPU for
    # Ray Data's read tasks, and the pipeline would wait forever.
    return StageOptions(num_cpus=0.5, actors=settings.standardize_actors, batch_size=settings.ingest_batch_size)


def stage_options(settings: Settings) -> dict[str, StageOptions]:
    """Resources of each stage: ``read``, ``extract``, ``standardize``, ``embed`` and ``match_chunk``.

    The embedding stage holds one encoder per actor; on a GPU node several actors share a
    GPU (``embed_num_gpus`` = 0.25 puts four on one), and then need little CPU of their own.
    A stage named in ``settings.stage_resources`` also asks for those custom resources, so it
    runs only on the nodes that offer them (say, embedding on the GPU pool).
    """
    batch = settings.ingest_batch_size
    embed_gpus = settings.embed_num_gpus
    stages = {
        # Reading files is I/O and takes milliseconds a batch. At Ray Data's default of a
        # whole CPU, the actor pools' shares could leave too little for it on a small node
        # (two embedding actors and a standardizer on 2 CPUs left 0.5), and nothing was read.
        # As few at once as keep the standardizers fed: each task starts a worker process
        # (a second of CPU) the first time, for milliseconds of reading.
        "read": StageOptions(num_cpus=0.25, batch_size=batch, tasks=(_standardize_options(settings).actors or 1) + 1),
        "extract": StageOptions(num_cpus=0.5, batch_size=batch),
        "standardize": _standardize_options(settings),
        "embed": StageOptions(
            num_cpus=0.5,
            num_gpus=embed_gpus,
            actors=settings.embed_actors,
            # On a CPU, batches cost the same per text at any size (the encoder groups
            # texts by length, embed.length_buckets), and a batch of the pipeline's size
            # starts as soon as one is standardized; a GPU wants more texts per pass.
            batch_size=max(batch, 32) if embed_gpus else batch,
        ),
        "match_chunk": StageOptions(num_cpus=settings.match_chunk_cpus, batch_size=settings.match_chunk_size),
    }
    return {
        name: replace(options, resources=dict(settings.stage_resources.get(name, {})))
        for name, options in stages.items()
    }
