"""Settings: the one place where defaults live.

Every default works offline on a laptop: LanceDB in ``./cvmatch_data``, the bundled
all-MiniLM-L6-v2 encoder, the rule-based standardizer and no GPU. A cluster overrides
them through ``CVMATCH_*`` environment variables (or a ``Settings(...)`` built in code);
nothing is read from the environment at import time.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from cvmatch_ray.storage.objectstore import options_from_env


#: The tenant of keys given as a list, of the CLI and batch jobs by default, and of a server
#: without keys; its data is the data directory itself (so data from before tenants stays).
DEFAULT_TENANT = "default"
#: A tenant's name: a folder name on every object store, never a path.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: The folder of the data directory that holds the other tenants' data, one folder each.
TENANTS_FOLDER = "tenants"


def check_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name.

    Raises:
        ValueError: it is not (``TENANT_NAME``).
    """
    if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
        raise ValueError(f"invalid tenant name {str(name)[:80]!r}: lowercase letters, digits, '_' and '-', at most 63")
    return name


def tenant_data_dir(data_dir: str, tenant: str) -> str:
    """Where ``tenant``'s tables and blobs live: the data directory itself for the default
    tenant, else ``<data_dir>/tenants/<tenant>`` (joined as a URI, so ``s3://`` works).

    Each tenant has tables and a blob area of its own: another tenant's ids do not exist
    there, whole-pool reads see only its CVs, and the same bytes from two tenants are two CVs.

    Raises:
        ValueError: ``tenant`` is not a valid tenant name.
    """
    if check_tenant(tenant) == DEFAULT_TENANT:
        return data_dir
    return f"{data_dir.rstrip('/')}/{TENANTS_FOLDER}/{tenant}"


def tenants_of_keys(keys: Any) -> Any:
    """API keys as ``{key: tenant}``: a list of keys (the form from before tenants) is the
    default tenant's; tenant names are checked. Anything else is left to validation.

    Raises:
        ValueError: an empty key or an invalid tenant name.
    """
    if isinstance(keys, (list, tuple)):
        keys = dict.fromkeys(keys, DEFAULT_TENANT)
    if isinstance(keys, dict):
        for key, tenant in keys.items():
            if not key:
                raise ValueError("an API key cannot be empty")
            check_tenant(tenant)
    return keys


class ScoreWeights(BaseModel):
    """Relative weight of each score component.

    Components that do not apply to a pair (a JD with no preferred skills, no minimum
    years...) are left out and the remaining weights are renormalized, so the weights need
    not sum to one.
    """

    # Defaults from a grid search on the development postings (benchmarks/RESULTS.md has
    # the ablation; docs/performance.md why some start at 0). relevant_experience_share was
    # chosen on the dev half of every task (category A/B, within-family C): 0.7 lifts B and
    # C and leaves A within its SE; requirement_statements did not help there, so it is off.
    required_skills: float = Field(0.10, ge=0, description="Share of the JD's required skills the CV has.")
    preferred_skills: float = Field(0.0, ge=0, description="Share of the JD's preferred skills the CV has.")
    semantic: float = Field(0.35, ge=0, description="Similarity of the title, skills and experience sections.")
    experience: float = Field(0.15, ge=0, description="Years of experience against the JD's minimum.")
    education: float = Field(0.0, ge=0, description="Education level against the JD's.")
    title: float = Field(0.20, ge=0, description="CV titles against the JD's (same occupation = full credit).")
    lexical: float = Field(0.0, ge=0, description="BM25 of the JD over the blinded CV text.")

    # How components are computed (not weights; left out of the weighted mean).
    related_skill_credit: float = Field(
        0.5, ge=0, lt=1, description="Credit for a missing skill when the CV has one of the same narrow category."
    )
    title_match_credit: float = Field(
        1.0, ge=0, le=1, description="Title component when CV and JD titles map to the same occupation."
    )
    relevant_experience_share: float = Field(
        0.7, ge=0, le=1,
        description="Share of the experience component measured on months in roles matching the JD "
        "(title occupation or skills) instead of total months.",
    )
    requirement_statements: bool = Field(
        False,
        description="Skill components count the JD's requirement statements met (any one skill of an "
        "'A, B or C' statement meets it) instead of skills met.",
    )

    @property
    def component_weights(self) -> dict[str, float]:
        """The weights of the score components, by component name."""
        return {k: v for k, v in self.model_dump().items() if k not in _SCORE_PARAMETERS}

    @model_validator(mode="after")
    def _some_weight(self) -> ScoreWeights:
        if sum(self.component_weights.values()) <= 0:
            raise ValueError("at least one score weight must be positive")
        return self


_SCORE_PARAMETERS = frozenset(
    {"related_skill_credit", "title_match_credit", "relevant_experience_share", "requirement_statements"}
)


class RetrievalSettings(BaseModel):
    """How one JD is matched against the whole stored pool (``match.retrieve``)."""

    candidates: int = Field(300, gt=0, description="CVs rescored exactly by the full scorer.")
    per_source: int = Field(300, gt=0, description="CVs each source (full-text, each vector column) returns.")
    rrf_k: int = Field(60, gt=0, description="Reciprocal-rank-fusion constant.")
    ann_min_rows: int = Field(
        1_000_000, gt=0,
        description="From this many CVs, whole-pool matching shortlists by a sketch of the vectors (approximate) "
        "instead of bounding every CV's score (exact).",
    )
    # 1,000 and 10 held the exact top 10 for every JD at a million synthetic CVs and 99.95% of
    # the top 100 (250 and 0: 100% and 96.6%); see docs/performance.md.
    ann_candidates: int = Field(
        1000, gt=0, description="Approximate shortlist: CVs re-ranked with their full vectors and roles."
    )
    ann_margin: int = Field(
        10, ge=0, description="Approximate shortlist: CVs scored in full past top_k."
    )
    lexical_idf_sample: int = Field(50_000, gt=0, description="CVs counted for BM25 document frequencies.")


class LLMSettings(BaseModel):
    """The LLM standardizers: a vLLM engine per actor, or an OpenAI-compatible server."""

    model: str | None = Field(None, description="vLLM: a Hugging Face model name or local folder.")
    max_model_len: int = Field(8192, gt=0, description="Context length of the vLLM engine.")
    max_tokens: int = Field(2048, gt=0, description="Most tokens generated per document.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0, le=1, description="Share of a GPU's memory one engine takes; ~0.4 for two engines per GPU."
    )
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs one vLLM engine spans.")
    num_gpus: float = Field(
        1.0, ge=0, description="GPUs per vLLM engine actor (0.5 = two engines per GPU); 0 on a CPU-only node."
    )
    engines: int = Field(1, gt=0, description="vLLM engine actors in the Ray Data pool.")
    dtype: str = Field("auto", description="vLLM weight dtype.")
    enforce_eager: bool = Field(False, description="Skip CUDA graphs (needed by the CPU build of vLLM).")
    seed: int = Field(0, description="Sampling seed (decoding is greedy; the retry samples).")
    retry_temperature: float = Field(
        0.3, ge=0, description="Temperature of the one retry after an output that failed validation."
    )
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    openai_model: str | None = Field(None, description="The model name the OpenAI-compatible server serves.")
    openai_api_key: str | None = Field(None, description="Bearer token for the OpenAI-compatible server.")


class UploadSettings(BaseModel):
    """How the API takes accepted uploads through processing (``serve/upload_worker.py``)."""

    concurrency: int = Field(
        16, gt=0, description="Queued uploads one UploadPipeline replica processes at once; more wait, accepted, in line."
    )
    settle_s: float = Field(
        0.25,
        ge=0,
        description="Background processing of new uploads starts once none has arrived for this long (at most "
        "2 s after the first), so a burst is accepted before its processing competes for the CPU; 0 = at once.",
    )
    recover_every_s: float = Field(
        10.0, ge=0, description="How often the ingress looks for uploads a dead replica left unfinished; 0 = never."
    )
    lease_s: float = Field(
        30.0,
        gt=0,
        description="A claimed upload is taken back (given to another worker) once its worker has not reported "
        "a step or renewed its lease (every lease_s / 3) for this long; an accepted upload the queue never got is "
        "put in line once it is this old.",
    )
    max_attempts: int = Field(
        3,
        gt=0,
        description="An upload whose processing ended abnormally this many times (its worker died, its lease ran "
        "out, a backend failed) fails as poison_document instead of being tried again.",
    )


class StoreSettings(BaseModel):
    """How the LanceDB tables are kept (``storage/``)."""

    compact_every: int = Field(
        20, ge=0, description="Compact a table after this many commits through one process's store; 0 = never."
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Object-store options of an s3:// data_dir, in LanceDB's keys (aws_endpoint, aws_region, "
        "aws_access_key_id, aws_secret_access_key, aws_session_token, allow_http...), for the tables and the blobs "
        "alike; the standard AWS_* variables fill those not set here (docs/deployment.md).",
    )
    erase_grace_s: float = Field(
        10.0,
        ge=0,
        description="Longest a write to a table may take. A deleted CV's bytes are removed from disk once "
        "the table versions that hold them are this old, so a DELETE answers after at least this long.",
    )


#: The Ray stages whose resources ``stage_resources`` can add to (``pipelines.resources``).
RayStage = Literal["extract", "standardize", "embed", "match_chunk"]
#: Resources Ray sets from ``num_cpus``/``num_gpus``/``memory``, never through ``resources``.
_RAY_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


class _AWSEnvironment(PydanticBaseSettingsSource):
    """The standard ``AWS_*`` variables as ``store.storage_options``, below every other source
    (a ``CVMATCH_STORE__STORAGE_OPTIONS`` key wins over the variable that fills the same key).

    Read when the settings are built, so the settings carry them: a Ray worker on another node
    that is handed them reaches the store without the variables in its own environment.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ fills the one nested field

    def __call__(self) -> dict[str, Any]:
        options = options_from_env(os.environ)
        return {"store": {"storage_options": options}} if options else {}


class Settings(BaseSettings):
    """cvmatch-ray configuration (environment prefix ``CVMATCH_``).

    Nested fields use ``__`` in the environment, e.g. ``CVMATCH_WEIGHTS__SEMANTIC=0.3``.
    The standard ``AWS_*`` variables fill ``store.storage_options`` (``_AWSEnvironment``).
    """

    model_config = SettingsConfigDict(
        env_prefix="CVMATCH_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    # --- storage -------------------------------------------------------------------
    data_dir: str = Field(
        "./cvmatch_data",
        description="LanceDB URI: a local folder, or s3://, gs://, az:// on a cluster.",
    )

    store: StoreSettings = Field(default_factory=StoreSettings)

    # --- extraction limits ---------------------------------------------------------
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest accepted file.")
    max_pdf_pages: int = Field(30, gt=0, description="A PDF with more pages is refused.")
    max_docx_inflated_bytes: int = Field(
        50 * 1024 * 1024, gt=0, description="Most bytes a DOCX may inflate to (zip-bomb guard)."
    )
    max_docx_entries: int = Field(
        1000, gt=0, description="A DOCX holding more files is refused as too complex (a CV holds a few dozen)."
    )
    max_docx_xml_bytes: int = Field(
        8 * 1024 * 1024, gt=0,
        description="Most bytes the XML parts of a DOCX may inflate to, in all, before they are parsed "
        "(a CV's are about 1 MB); more is refused as too complex.",
    )
    max_docx_compression_ratio: float = Field(
        100.0, gt=1,
        description="Most one XML part of a DOCX over 1 MiB may inflate, relative to its compressed size "
        "(Word's own parts stay under ~35); more is refused as too complex.",
    )
    max_pdf_chars: int = Field(
        500_000, gt=0,
        description="Most characters a PDF's pages may hold in all, counted page by page before layout; "
        "more is refused as too complex.",
    )
    max_text_chars: int = Field(200_000, gt=0, description="Extracted text is cut past this.")

    # --- standardization -----------------------------------------------------------
    standardizer: Literal["rules", "vllm", "openai"] = Field(
        "rules", description="Text -> profile backend: the offline rules, vLLM in-process, or an OpenAI-compatible server."
    )
    field_extractor: Literal["crf", "none"] = Field(
        "crf",
        description="The rules backend's learned field extractor (names, companies, titles, degrees, skills): "
        "the shipped CRF, or none (rules alone).",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)

    # --- embeddings ----------------------------------------------------------------
    embedding_model: str | None = Field(
        None,
        description="sentence-transformers model name or path; None = the bundled all-MiniLM-L6-v2.",
    )
    embedding_device: str = Field("cpu", description='Torch device of the encoder, e.g. "cuda" on GPU nodes.')
    embedding_batch_size: int = Field(64, gt=0, description="Section texts per encoder call.")
    embedding_threads: int | None = Field(
        None,
        gt=0,
        description="Groups of texts a CPU encoder runs at once, each on one core; None = one per core (at most 4).",
    )
    embedding_max_tokens: int | None = Field(
        128, gt=0, description="Word pieces read per section text; None = the model's own limit."
    )

    # --- background uploads ----------------------------------------------------------
    upload: UploadSettings = Field(default_factory=UploadSettings)

    # --- scoring -------------------------------------------------------------------
    weights: ScoreWeights = Field(default_factory=ScoreWeights)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    top_k: int = Field(20, gt=0, description="Default number of ranked CVs returned.")

    # --- Ray -----------------------------------------------------------------------
    ray_address: str | None = Field(None, description="Ray cluster address; None = local Ray.")
    ray_namespace: str = Field("cvmatch", description="Ray namespace of the detached progress actor.")
    match_chunk_size: int = Field(50, gt=0, description="CVs per matching chunk (the progress granularity).")
    match_max_cvs: int = Field(100_000, gt=0, description="Most CV ids one match request may name (else 413).")
    match_max_chunks: int = Field(
        2_000, gt=0, description="Most chunks one match job is cut into; larger jobs get larger chunks."
    )
    embed_num_gpus: float = Field(0.0, ge=0, description="GPU share of one embedding actor, e.g. 0.25.")
    embed_actors: int = Field(1, gt=0, description="Embedding actors in the Ray Data pool.")
    ingest_batch_size: int = Field(16, gt=0, description="Documents per Ray Data batch.")
    standardize_actors: int = Field(1, gt=0, description="Standardizer actors in the Ray Data pool.")
    match_chunk_cpus: float = Field(0.5, gt=0, description="CPUs per matching chunk task.")
    stage_resources: dict[RayStage, dict[str, float]] = Field(
        default_factory=dict,
        description='Custom Ray resources a stage\'s tasks and actors ask for, by stage (extract, standardize, '
        'embed, match_chunk), e.g. {"embed": {"gpu_pool": 0.01}}: the stage then runs only on nodes started with '
        "them (ray start --resources).",
    )
    match_parallelism: int = Field(4, gt=0, description="Matching tasks in flight at once per job.")
    match_task_min_cvs: int = Field(
        2_000, ge=0,
        description="Fewest CVs one matching task scores; a job of no more is scored by its driver alone "
        "(a Ray task would cost more than the scoring). 0 = a task per few chunks, whatever the job's size.",
    )
    background_niceness: int = Field(
        19, ge=0, le=19,
        description="How much processes doing background work (model replicas, Ray Data stages) lower "
        "their CPU priority, so HTTP requests and progress reads on a busy node go first; 0 = not at all.",
    )

    # --- HTTP API ------------------------------------------------------------------
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='Accepted X-API-Key values: a JSON object {"key": "tenant"}, or a list of keys (all of '
        'tenant "default"); each tenant sees only its own CVs, JDs, uploads and jobs; empty = no auth (laptop).',
    )
    tenant: str = Field(
        DEFAULT_TENANT,
        description="The tenant whose data the CLI and batch jobs read and write (the API takes it from the key).",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys_of_tenants(cls, value: Any) -> Any:
        return tenants_of_keys(value)

    @field_validator("tenant")
    @classmethod
    def _valid_tenant(cls, value: str) -> str:
        return check_tenant(value)

    @field_validator("stage_resources")
    @classmethod
    def _custom_resources(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for stage, resources in value.items():
            for name, amount in resources.items():
                if name in _RAY_BUILTIN_RESOURCES:
                    raise ValueError(f"stage_resources[{stage}]: {name} is set by the stage's own options, not here")
                if amount <= 0:
                    raise ValueError(f"stage_resources[{stage}][{name}] must be positive, got {amount}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, dotenv_settings, file_secret_settings, _AWSEnvironment(settings_cls)

    @property
    def tenant_dir(self) -> str:
        """Where this settings' tenant's tables and blobs live (``tenant_data_dir``); the
        progress actor alone uses ``data_dir`` itself (one per deployment, every tenant's jobs)."""
        return tenant_data_dir(self.data_dir, self.tenant)
