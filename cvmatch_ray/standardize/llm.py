"""LLM standardizers: vLLM in-process (:class:`VLLMStandardizer`) or any OpenAI-compatible
server (:class:`OpenAIStandardizer`).

Both share one path (:class:`LLMStandardizer`): prompts from ``prompts.py``, decoding
constrained by the profile's JSON schema (:func:`llm_json_schema`), greedy decoding with a
fixed seed, validation with the same pydantic model, one retry for the outputs that fail
(as a second batch, with a note and a little temperature, since repeating a greedy decode
would only repeat the failure), then a per-item :class:`LLMOutputError`. A profile that
passes is merged with the rule-based one (:func:`merge_profiles`): regular expressions read
e-mails, phones, links and date ranges better than a small model, and skill names go
through the taxonomy so they compare with the rules' and the JDs' names.

vLLM is imported only when an engine is built, so this module imports without it. On a
CPU-only vLLM build, set ``VLLM_TARGET_DEVICE=cpu`` and ``VLLM_CPU_KVCACHE_SPACE`` (GiB) in
the environment before the engine is built.
"""

from __future__ import annotations

import abc

import copy
import functools
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from cvmatch_ray.config import LLMSettings

from cvmatch_ray.schemas import (
    CVProfile,
    JDProfile,
    Provenance,
)
from cvmatch_ray.standardize.base import StandardizationError, Standardizer
from cvmatch_ray.standardize.grounding import Grounding
from cvmatch_ray.standardize.llm_merge import ground_cv, ground_jd, merge_jd_profiles, merge_profiles
from cvmatch_ray.standardize.prompts import (
    PROMPT_VERSION,
    DocKind,
    Message,
    build_messages,
    render_prompt,
    retry_note,
)

if TYPE_CHECKING:
    from cvmatch_ray.config import Settings
    from cvmatch_ray.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

__all__ = [
    "BatchStats",
    "LLMBackendError",
    "LLMOutputError",
    "LLMStandardizer",
    "VLLMStandardizer",
    "llm_json_schema",
]

P = TypeVar("P", CVProfile, JDProfile)

# Constructor defaults come from the one place defaults live (``config.LLMSettings``).
_DEFAULTS = LLMSettings()

# xgrammar (vLLM's default structured-output backend) rejects a string schema that has both
# a ``pattern`` and a length bound (xgrammar issue 966), so the bound is folded into the
# pattern ("^[^...]*$" -> "^[^...]{0,120}$"). Bounded repeats grow the grammar, and from a
# few hundred characters on, compiling it takes seconds and (xgrammar 0.2.8, with vLLM's
# grammar cache) can fail outright, so longer bounds (300-char Text, 2000-char LongText)
# are left to pydantic: an over-long string fails validation and is retried.
_FOLD_MAX_LENGTH = 120
_STAR_CLASS = re.compile(r"\^(\[(?:\\.|[^\]\\])*\])\*\$")


class LLMBackendError(RuntimeError):
    """The backend cannot run at all: vLLM missing, engine failed to start, server unreachable."""


class LLMOutputError(StandardizationError):
    """One document whose LLM output failed validation twice.

    Attributes:
        reason: what was wrong (field paths and error kinds, never document content).
        finish_reason: the engine's finish reason of the last attempt ("stop", "length"...).
        attempts: how many generations were tried.
    """

    def __init__(self, reason: str, *, finish_reason: str | None = None, attempts: int = 2) -> None:
        super().__init__(f"LLM output rejected after {attempts} attempt(s): {reason}")
        self.reason = reason
        self.finish_reason = finish_reason
        self.attempts = attempts


@dataclass(slots=True)
class BatchStats:
    """Counters of one batch call, for logs and benchmarks."""

    documents: int = 0
    generations: int = 0
    retried: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    ungrounded: int = 0  # skills, titles, companies the LLM returned that the text lacks


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One generation: which document, its text, the attempt number and its retry note."""

    index: int
    kind: DocKind
    text: str
    attempt: int
    note: str | None = None

    @property
    def messages(self) -> list[Message]:
        return build_messages(self.kind, self.text, note=self.note)


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = field(default=None)
    """Set when the backend produced nothing for this request (an HTTP error...)."""


# ----------------------------------------------------------------------------- schema


def _fold_lengths(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and "pattern" in node and ("maxLength" in node or "minLength" in node):
            hi, lo = node.pop("maxLength", None), node.pop("minLength", 0)
            star = _STAR_CLASS.fullmatch(node["pattern"])
            if star and hi is not None and hi <= _FOLD_MAX_LENGTH:
                node["pattern"] = f"^{star.group(1)}{{{lo},{hi}}}$"
        for value in node.values():
            _fold_lengths(value)
    elif isinstance(node, list):
        for value in node:
            _fold_lengths(value)


@functools.cache
def _schema_for(model: type[BaseModel]) -> dict[str, Any]:
    schema = copy.deepcopy(model.model_json_schema())
    _fold_lengths(schema)
    return schema


def llm_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema that constrains decoding for ``model`` (a copy; safe to mutate).

    It is ``model.model_json_schema()`` with string length bounds folded into the patterns
    where the grammar backend allows it, and dropped elsewhere (pydantic still checks them).
    """
    return copy.deepcopy(_schema_for(model))


# ------------------------------------------------------------------------- shared path


def _rejection(err: ValidationError | None, gen: Generation, max_tokens: int) -> str:
    """Why an output was rejected, without any of its content (it may hold PII)."""
    if gen.error:
        return gen.error
    if gen.finish_reason == "length":
        return f"output cut at max_tokens={max_tokens} before the JSON was complete"
    if err is None:
        return "no output"
    parts = [f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['type']}" for e in err.errors()[:3]]
    more = err.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class LLMStandardizer(abc.ABC):
    """What every LLM backend shares: prompts, validation, one retry, merge with the rules.

    Subclasses implement :meth:`_generate` (a batch of requests in, one generation each out,
    in order) and set ``name``.

    Args:
        model: the model name or path (goes into provenance).
        max_tokens: the most tokens generated for one profile.
        seed: the sampling seed (greedy decoding needs none, the retry does).
        retry_temperature: the temperature of the second attempt.
        rules: the standardizer whose output is merged in; None = the rule-based one;
            pass ``False`` to switch merging off.
        taxonomy: the skills lookup for canonical names; None = the shipped one.
        today: the month "current" jobs run to (tests fix it); None = each call's today.
    """

    name = "llm"

    def __init__(
        self,
        *,
        model: str,
        max_tokens: int = _DEFAULTS.max_tokens,
        seed: int = 0,
        retry_temperature: float = _DEFAULTS.retry_temperature,
        rules: Standardizer | None | Literal[False] = None,
        taxonomy: Taxonomy | None = None,
        today: date | None = None,
    ) -> None:
        if max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        self.model = model
        self.max_tokens = max_tokens
        self.seed = seed
        self.retry_temperature = retry_temperature
        self.today = today
        self._rules_arg = rules
        self._taxonomy_arg = taxonomy
        self._helpers: tuple[Standardizer | None, Taxonomy | None] | None = None
        self.last_stats = BatchStats()

    # -- the Standardizer protocol ---------------------------------------------------

    @property
    def provenance(self) -> Provenance:
        """Backend name, model and prompt version."""
        return Provenance(backend=self.name, model=self.model[-120:], prompt_version=PROMPT_VERSION)

    def standardize_cv(self, text: str) -> CVProfile:
        """The CV profile of ``text``; raises StandardizationError if none can be built."""
        return _one(self.standardize_cvs([text]))

    def standardize_jd(self, text: str) -> JDProfile:
        """The JD profile of ``text``; raises StandardizationError if none can be built."""
        return _one(self.standardize_jds([text]))

    def standardize_cvs(self, texts: Sequence[str]) -> list[CVProfile | StandardizationError]:
        """Standardize a batch of CVs with one engine call (plus one for the retries).

        Returns one item per text, in order: a validated, merged profile or the error that
        explains why there is none.

        Raises:
            LLMBackendError: the backend could not run at all.
        """
        return self._run("cv", CVProfile, texts)

    def standardize_jds(self, texts: Sequence[str]) -> list[JDProfile | StandardizationError]:
        """Standardize a batch of JDs; same contract as :meth:`standardize_cvs`."""
        return self._run("jd", JDProfile, texts)

    # -- backend hook ------------------------------------------------------------------

    @abc.abstractmethod
    def _generate(self, requests: list[LLMRequest], schema: dict[str, Any]) -> list[Generation]:
        """One completion per request, in order (one engine call or one request each)."""

    # -- shared path -------------------------------------------------------------------

    def _rules_and_taxonomy(self) -> tuple[Standardizer | None, Taxonomy | None]:
        if self._helpers is None:
            # Imported here: the rules and taxonomy load data files, which a caller that only
            # wants the schema or the prompts should not pay for.
            from cvmatch_ray.taxonomy import load_taxonomy

            taxonomy = self._taxonomy_arg or load_taxonomy()
            rules: Standardizer | None
            if self._rules_arg is False:
                rules = None
            elif self._rules_arg is None:
                from cvmatch_ray.standardize.rules import RuleStandardizer

                rules = RuleStandardizer(taxonomy=taxonomy, today=self.today)
            else:
                rules = self._rules_arg
            self._helpers = (rules, taxonomy)
        return self._helpers

    def _merge(self, kind: DocKind, profile: P, text: str, stats: BatchStats) -> P:
        rules, taxonomy = self._rules_and_taxonomy()
        grounding = Grounding(text, taxonomy)
        try:
            try:
                ruled: CVProfile | JDProfile
                if kind == "cv":
                    ruled = rules.standardize_cv(text) if rules is not None else CVProfile()
                else:
                    ruled = rules.standardize_jd(text) if rules is not None else JDProfile()
            except StandardizationError as e:
                # The rules could not read this text; the LLM's profile, checked, still stands.
                logger.info("rules found nothing to merge (%s); keeping the LLM profile", type(e).__name__)
                ruled = CVProfile() if kind == "cv" else JDProfile()
            if kind == "cv":
                return merge_profiles(profile, ruled, text=text, taxonomy=taxonomy, today=self.today,
                                      grounding=grounding)
            return merge_jd_profiles(profile, ruled, taxonomy=taxonomy, grounding=grounding)
        except ValidationError as e:
            logger.warning("merged %s profile failed validation (%d errors); keeping the LLM profile, checked",
                           kind, e.error_count())
            grounding = Grounding(text, taxonomy)
            return ground_cv(profile, grounding) if isinstance(profile, CVProfile) else ground_jd(profile, grounding)
        finally:
            if grounding.dropped:
                stats.ungrounded += sum(grounding.dropped.values())
                logger.info("%s: dropped what its text does not support: %s", kind, dict(grounding.dropped))

    def _run(self, kind: DocKind, model: type[P], texts: Sequence[str]) -> list[P | StandardizationError]:
        started = time.perf_counter()
        stats = BatchStats(documents=len(texts))
        results: list[P | StandardizationError | None] = [None] * len(texts)
        pending: list[LLMRequest] = []
        for i, text in enumerate(texts):
            if not text or not text.strip():
                results[i] = StandardizationError(f"empty {kind.upper()} text")
            else:
                pending.append(LLMRequest(i, kind, text, attempt=1))
        schema = llm_json_schema(model)
        for attempt in (1, 2):
            if not pending:
                break
            gens = self._generate(pending, schema)
            stats.generations += len(pending)
            failed: list[LLMRequest] = []
            for req, gen in zip(pending, gens, strict=True):
                stats.prompt_tokens += gen.prompt_tokens
                stats.completion_tokens += gen.completion_tokens
                err: ValidationError | None = None
                if gen.error is None and gen.finish_reason != "length":
                    try:
                        results[req.index] = self._merge(
                            kind, model.model_validate_json(gen.text), texts[req.index], stats
                        )
                        continue
                    except ValidationError as e:
                        err = e
                reason = _rejection(err, gen, self.max_tokens)
                if attempt == 1:
                    failed.append(LLMRequest(req.index, kind, req.text, attempt=2, note=retry_note(reason)))
                else:
                    results[req.index] = LLMOutputError(reason, finish_reason=gen.finish_reason, attempts=2)
            if attempt == 1:
                stats.retried = len(failed)
            pending = failed
        stats.failed = sum(isinstance(r, StandardizationError) for r in results)
        stats.seconds = time.perf_counter() - started
        self.last_stats = stats
        logger.info(
            "%s batch: %d %ss, %d retried, %d failed, %d prompt + %d completion tokens in %.1fs",
            self.name, stats.documents, kind, stats.retried, stats.failed,
            stats.prompt_tokens, stats.completion_tokens, stats.seconds,
        )
        if any(r is None for r in results):  # every path above sets its item; guard the invariant
            raise AssertionError("an item of the batch got no result")
        return results  # type: ignore[return-value]

    def _sampling(self, attempt: int) -> tuple[float, int]:
        """Temperature and seed of an attempt: greedy first, then a seeded re-sample."""
        return (0.0, self.seed) if attempt == 1 else (self.retry_temperature, self.seed + 1)


def _special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special and added tokens: strings its encoder reads as one control token."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or ())
    found.update(t.content for t in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values())
    return tuple(sorted(s for s in found if s and not s.isspace()))


def _one(results: list[P | StandardizationError]) -> P:
    (item,) = results
    if isinstance(item, StandardizationError):
        raise item
    return item


# ------------------------------------------------------------------------------- vLLM


class VLLMStandardizer(LLMStandardizer):
    """Standardizer on an in-process vLLM engine, built once on first use.

    The engine is the expensive part (weights, KV cache): one instance per process or Ray
    actor, reused for every batch. :meth:`load` builds it eagerly (an actor's ``__init__``).

    Args:
        model: a local model folder or a model id the machine can load.
        max_model_len: context length; prompts are cut to ``max_model_len - max_tokens``.
        max_tokens: the most tokens generated for one profile.
        gpu_memory_utilization: share of the GPU memory vLLM may take (0.4 lets two engines
            share one GPU). Ignored by the CPU build.
        tensor_parallel_size: GPUs one engine spans.
        seed: sampling seed of the engine and of every request.
        dtype: weights dtype ("auto", "bfloat16", "float32"...).
        enforce_eager: skip CUDA graphs / compilation (faster start, slower decode).
        engine_kwargs: any other ``vllm.LLM`` argument (``swap_space``, ``quantization``...).
        **common: see :class:`LLMStandardizer` (retry_temperature, rules, taxonomy, today).
    """

    name = "vllm"

    def __init__(
        self,
        *,
        model: str,
        max_model_len: int = _DEFAULTS.max_model_len,
        max_tokens: int = _DEFAULTS.max_tokens,
        gpu_memory_utilization: float = _DEFAULTS.gpu_memory_utilization,
        tensor_parallel_size: int = 1,
        seed: int = 0,
        dtype: str = "auto",
        enforce_eager: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
        **common: Any,
    ) -> None:
        super().__init__(model=model, max_tokens=max_tokens, seed=seed, **common)
        if max_tokens >= max_model_len:
            raise ValueError(f"max_tokens ({max_tokens}) must be below max_model_len ({max_model_len})")
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.tensor_parallel_size = tensor_parallel_size
        self.dtype = dtype
        self.enforce_eager = enforce_eager
        self.engine_kwargs = dict(engine_kwargs or {})
        self._llm: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> VLLMStandardizer:
        """A standardizer configured by ``settings.llm``; keyword overrides win.

        Raises:
            LLMBackendError: no model is configured.
        """
        llm = settings.llm
        kwargs: dict[str, Any] = {
            "model": llm.model,
            "max_model_len": llm.max_model_len,
            "max_tokens": llm.max_tokens,
            "gpu_memory_utilization": llm.gpu_memory_utilization,
            "tensor_parallel_size": llm.tensor_parallel_size,
            "dtype": llm.dtype,
            "seed": llm.seed,
            "enforce_eager": llm.enforce_eager,
            "retry_temperature": llm.retry_temperature,
        }
        kwargs.update(overrides)
        if not kwargs["model"]:
            raise LLMBackendError("no LLM model configured: set CVMATCH_LLM__MODEL to a model folder or id")
        return cls(**kwargs)

    def load(self) -> Any:
        """The ``vllm.LLM`` engine, built on the first call.

        Raises:
            LLMBackendError: vLLM is not installed, or the engine failed to start.
        """
        with self._lock:
            if self._llm is None:
                try:
                    from vllm import LLM
                except ImportError as e:
                    raise LLMBackendError("vLLM is not installed: pip install 'cvmatch-ray[vllm]'") from e
                started = time.perf_counter()
                try:
                    self._llm = LLM(
                        model=self.model,
                        max_model_len=self.max_model_len,
                        gpu_memory_utilization=self.gpu_memory_utilization,
                        tensor_parallel_size=self.tensor_parallel_size,
                        dtype=self.dtype,
                        seed=self.seed,
                        enforce_eager=self.enforce_eager,
                        # Compact JSON: whitespace between tokens is pure decode cost.
                        structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
                        **self.engine_kwargs,
                    )
                except (RuntimeError, ValueError, OSError) as e:
                    raise LLMBackendError(f"vLLM engine failed to start for model {self.model!r}: {e}") from e
                logger.info("vLLM engine ready in %.1fs", time.perf_counter() - started)
            return self._llm

    def close(self) -> None:
        """Drop the engine (frees its memory once nothing else holds it)."""
        with self._lock:
            self._llm = None

    def _prompt_ids(self, tokenizer: Any, req: LLMRequest, budget: int) -> list[int]:
        specials = _special_strings(tokenizer)
        messages = build_messages(req.kind, req.text, note=req.note, special_tokens=specials)
        ids = tokenizer.encode(render_prompt(messages, tokenizer), add_special_tokens=False)
        text = req.text
        for _ in range(4):
            if len(ids) <= budget:
                return ids
            # Too long for the context: cut the document's tail by the overflow plus a margin
            # (token counts of a cut text are not additive), keeping the fence and the guide.
            text_ids = tokenizer.encode(text, add_special_tokens=False)
            text = tokenizer.decode(text_ids[: max(0, len(text_ids) - (len(ids) - budget) - 16)])
            cut = build_messages(req.kind, text, note=req.note, special_tokens=specials)
            ids = tokenizer.encode(render_prompt(cut, tokenizer), add_special_tokens=False)
            logger.info("document %d cut to fit max_model_len (%d prompt tokens)", req.index, len(ids))
        if len(ids) <= budget:
            return ids
        raise LLMBackendError("the prompt template alone does not fit max_model_len - max_tokens")

    def _generate(self, requests: list[LLMRequest], schema: dict[str, Any]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        llm = self.load()
        tokenizer = llm.get_tokenizer()
        budget = self.max_model_len - self.max_tokens
        prompts = []
        params = []
        for req in requests:
            # Token ids, not strings: the engine would tokenize again, and the cut needs them.
            prompts.append({"prompt_token_ids": self._prompt_ids(tokenizer, req, budget)})
            temperature, seed = self._sampling(req.attempt)
            params.append(
                SamplingParams(
                    temperature=temperature,
                    seed=seed,
                    max_tokens=self.max_tokens,
                    structured_outputs=StructuredOutputsParams(json=schema, disable_any_whitespace=True),
                )
            )
        outputs = llm.generate(prompts, params, use_tqdm=False)
        gens = []
        for out in outputs:
            completion = out.outputs[0]
            gens.append(
                Generation(
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                )
            )
        return gens
