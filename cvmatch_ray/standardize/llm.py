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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from cvmatch_ray.config import LLMSettings

from cvmatch_ray.schemas import (
    MAX_SKILLS,
    Contact,
    CVProfile,
    ExperienceEntry,
    JDProfile,
    Provenance,
    SkillMention,
)
from cvmatch_ray.standardize.base import StandardizationError, Standardizer
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
    "OpenAIStandardizer",
    "VLLMStandardizer",
    "llm_json_schema",
    "make_llm_standardizer",
    "merge_jd_profiles",
    "merge_profiles",
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


@dataclass(frozen=True, slots=True)
class _Request:
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
class _Generation:
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


# ------------------------------------------------------------------------------ merge


def _ym_index(ym: str | None) -> int | None:
    if not ym:
        return None
    year, month = ym.split("-")
    return int(year) * 12 + int(month) - 1


def _entry_span(entry: ExperienceEntry, today: date) -> tuple[int, int] | None:
    """``[start, end)`` month indices of an entry, or None without a usable start."""
    start = _ym_index(entry.start)
    if start is None:
        return None
    end = _ym_index(entry.end)
    now = today.year * 12 + today.month - 1
    stop = now + 1 if end is None and entry.current else (end + 1 if end is not None else None)
    if stop is None or stop <= start:
        return None
    return start, min(stop, now + 1)


def _union(spans: list[tuple[int, int]]) -> int:
    total, cur = 0, None
    for s, e in sorted(spans):
        if cur is None or s > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [s, e]
        else:
            cur[1] = max(cur[1], e)
    if cur is not None:
        total += cur[1] - cur[0]
    return total


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _key(s: str | None) -> str:
    return " ".join((s or "").casefold().split())


def _canonical_skill(name: str, taxonomy: Taxonomy | None) -> str:
    if taxonomy is None:
        return name
    # The LLM only lists skills, so a blocked short form ("Go", "R") is meant as one.
    return taxonomy.canonical(name, allow_blocked=True) or name


def _canonical_skills(skills: list[SkillMention], taxonomy: Taxonomy | None) -> list[SkillMention]:
    merged: dict[str, SkillMention] = {}
    for skill in skills:
        name = _canonical_skill(skill.name, taxonomy)
        have = merged.get(name)
        if have is None:
            category = (taxonomy.category(name) if taxonomy is not None else None) or skill.category
            merged[name] = SkillMention(
                name=name, category=category, mentions=list(dict.fromkeys(skill.mentions))[:10],
                sections=list(dict.fromkeys(skill.sections))[:9],
            )
        else:
            have.mentions = list(dict.fromkeys([*have.mentions, *skill.mentions]))[:10]
            have.sections = list(dict.fromkeys([*have.sections, *skill.sections]))[:9]
    return list(merged.values())[:MAX_SKILLS]


def _canonical_names(names: list[str], taxonomy: Taxonomy | None, limit: int) -> list[str]:
    return list(dict.fromkeys(_canonical_skill(n, taxonomy) for n in names))[:limit]


def _merge_contact(llm: Contact, rules: Contact, text: str | None) -> Contact:
    folded = text.casefold() if text is not None else None
    email = rules.email
    if email is None and llm.email and (folded is None or llm.email.casefold() in folded):
        email = llm.email  # kept only when it is really written in the document
    phone = rules.phone
    if phone is None and llm.phone:
        digits = _digits(llm.phone)
        if len(digits) >= 7 and (text is None or digits in _digits(text)):
            phone = llm.phone
    links = list(rules.links)
    for link in llm.links:
        if link not in links and (folded is None or link.casefold() in folded):
            links.append(link)
    return Contact(
        name=llm.name or rules.name,
        email=email,
        phone=phone,
        location=llm.location or rules.location,
        links=links[:10],
    )


def merge_profiles(
    llm: CVProfile,
    rules: CVProfile,
    *,
    text: str | None = None,
    taxonomy: Taxonomy | None = None,
    today: date | None = None,
) -> CVProfile:
    """The LLM's CV profile, checked and filled with what the rules extract reliably.

    * e-mail and phone: the rules' value wins (read by regular expression from the text);
      the LLM's is kept only when the rules found none and, if ``text`` is given, it is
      written in the text (so a hallucinated address never lands in the store);
    * links: the rules' links, then the LLM's ones that are written in the text;
    * experience: an entry with no dates takes them from the rules' entry with the same
      title or company; every entry's ``months`` is recomputed from its dates;
    * total_experience_months: the rules' union of date ranges when they found any, else
      the union of the merged entries' dates, else the LLM's number;
    * skill names (CV skills, experience skills) go through the taxonomy, and duplicates
      that the taxonomy shows to be the same skill are merged.

    Args:
        llm: the profile the LLM produced (already validated).
        rules: the rule-based profile of the same text.
        text: the document text, to check the LLM's contact details against.
        taxonomy: the skills lookup; None leaves skill names as the LLM wrote them.
        today: the month "current" jobs run to; defaults to today.
    """
    today = today or date.today()
    by_title = {_key(e.title): e for e in rules.experience if e.title and e.start}
    by_company = {_key(e.company): e for e in rules.experience if e.company and e.start}
    experience: list[ExperienceEntry] = []
    spans: list[tuple[int, int]] = []
    for entry in llm.experience:
        entry = entry.model_copy(deep=True)
        if entry.start is None:
            match = by_title.get(_key(entry.title)) or by_company.get(_key(entry.company))
            if match is not None:
                entry.start, entry.end, entry.current = match.start, match.end, match.current
        span = _entry_span(entry, today)
        if span is not None:
            spans.append(span)
            entry.months = min(span[1] - span[0], 900)
        entry.skills = _canonical_names(entry.skills, taxonomy, 60)
        experience.append(entry)
    if rules.total_experience_months > 0:
        total = rules.total_experience_months
    elif spans:
        total = _union(spans)
    else:
        total = llm.total_experience_months
    data = llm.model_dump()
    data.update(
        contact=_merge_contact(llm.contact, rules.contact, text).model_dump(),
        experience=[e.model_dump() for e in experience],
        total_experience_months=min(total, 900),
        skills=[s.model_dump() for s in _canonical_skills(llm.skills, taxonomy)],
    )
    return CVProfile.model_validate(data)


def merge_jd_profiles(llm: JDProfile, rules: JDProfile, *, taxonomy: Taxonomy | None = None) -> JDProfile:
    """The LLM's JD profile with skill names through the taxonomy and gaps filled by the rules.

    Title, minimum years, education level and location that the LLM left empty come from
    the rules; a preferred skill that is also required is kept as required only.
    """
    required = _canonical_names(llm.required_skills, taxonomy, 80)
    preferred = [s for s in _canonical_names(llm.preferred_skills, taxonomy, 80) if s not in required]
    data = llm.model_dump()
    data.update(
        required_skills=required,
        preferred_skills=preferred,
        title=llm.title or rules.title,
        min_years=llm.min_years if llm.min_years is not None else rules.min_years,
        education_level=llm.education_level or rules.education_level,
        location=llm.location or rules.location,
    )
    return JDProfile.model_validate(data)


# ------------------------------------------------------------------------- shared path


def _rejection(err: ValidationError | None, gen: _Generation, max_tokens: int) -> str:
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
    def _generate(self, requests: list[_Request], schema: dict[str, Any]) -> list[_Generation]:
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

    def _merge(self, kind: DocKind, profile: P, text: str) -> P:
        rules, taxonomy = self._rules_and_taxonomy()
        try:
            if kind == "cv":
                ruled_cv = rules.standardize_cv(text) if rules is not None else CVProfile()
                return merge_profiles(profile, ruled_cv, text=text, taxonomy=taxonomy, today=self.today)
            ruled_jd = rules.standardize_jd(text) if rules is not None else JDProfile()
            return merge_jd_profiles(profile, ruled_jd, taxonomy=taxonomy)
        except StandardizationError as e:
            # The rules could not read this text; the LLM's validated profile still stands.
            logger.info("rules found nothing to merge (%s); keeping the LLM profile", type(e).__name__)
            return profile
        except ValidationError as e:
            logger.warning("merged %s profile failed validation (%d errors); keeping the LLM profile",
                           kind, e.error_count())
            return profile

    def _run(self, kind: DocKind, model: type[P], texts: Sequence[str]) -> list[P | StandardizationError]:
        started = time.perf_counter()
        stats = BatchStats(documents=len(texts))
        results: list[P | StandardizationError | None] = [None] * len(texts)
        pending: list[_Request] = []
        for i, text in enumerate(texts):
            if not text or not text.strip():
                results[i] = StandardizationError(f"empty {kind.upper()} text")
            else:
                pending.append(_Request(i, kind, text, attempt=1))
        schema = llm_json_schema(model)
        for attempt in (1, 2):
            if not pending:
                break
            gens = self._generate(pending, schema)
            stats.generations += len(pending)
            failed: list[_Request] = []
            for req, gen in zip(pending, gens, strict=True):
                stats.prompt_tokens += gen.prompt_tokens
                stats.completion_tokens += gen.completion_tokens
                err: ValidationError | None = None
                if gen.error is None and gen.finish_reason != "length":
                    try:
                        results[req.index] = self._merge(kind, model.model_validate_json(gen.text), texts[req.index])
                        continue
                    except ValidationError as e:
                        err = e
                reason = _rejection(err, gen, self.max_tokens)
                if attempt == 1:
                    failed.append(_Request(req.index, kind, req.text, attempt=2, note=retry_note(reason)))
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

    def _prompt_ids(self, tokenizer: Any, req: _Request, budget: int) -> list[int]:
        ids = tokenizer.encode(render_prompt(req.messages, tokenizer), add_special_tokens=False)
        text = req.text
        for _ in range(4):
            if len(ids) <= budget:
                return ids
            # Too long for the context: cut the document's tail by the overflow plus a margin
            # (token counts of a cut text are not additive), keeping the fence and the guide.
            text_ids = tokenizer.encode(text, add_special_tokens=False)
            text = tokenizer.decode(text_ids[: max(0, len(text_ids) - (len(ids) - budget) - 16)])
            cut = build_messages(req.kind, text, note=req.note)
            ids = tokenizer.encode(render_prompt(cut, tokenizer), add_special_tokens=False)
            logger.info("document %d cut to fit max_model_len (%d prompt tokens)", req.index, len(ids))
        if len(ids) <= budget:
            return ids
        raise LLMBackendError("the prompt template alone does not fit max_model_len - max_tokens")

    def _generate(self, requests: list[_Request], schema: dict[str, Any]) -> list[_Generation]:
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
                _Generation(
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=len(out.prompt_token_ids or ()),
                    completion_tokens=len(completion.token_ids),
                )
            )
        return gens


# ----------------------------------------------------------------- OpenAI-compatible


class OpenAIStandardizer(LLMStandardizer):
    """Standardizer calling an OpenAI-compatible ``/v1/chat/completions`` server.

    Works with ``vllm serve`` (and other servers that accept a JSON-schema
    ``response_format``). Requests of a batch run concurrently on a thread pool, so the
    server batches them; a synchronous client keeps it usable from async code (a Serve
    replica) through ``asyncio.to_thread``.

    Args:
        base_url: the server root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model name.
        api_key: sent as a bearer token when set.
        schema_mode: ``"response_format"`` (OpenAI's ``json_schema``) or
            ``"structured_outputs"`` (vLLM's own request field).
        max_tokens: the most tokens generated for one profile.
        seed: sampling seed sent with every request.
        timeout_s: one request's timeout.
        concurrency: requests in flight at once.
        transport: an ``httpx`` transport (tests, proxies).
        **common: see :class:`LLMStandardizer` (retry_temperature, rules, taxonomy, today).
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        schema_mode: Literal["response_format", "structured_outputs"] = "response_format",
        max_tokens: int = _DEFAULTS.max_tokens,
        seed: int = 0,
        timeout_s: float = 300.0,
        concurrency: int = 16,
        transport: Any = None,
        **common: Any,
    ) -> None:
        super().__init__(model=model, max_tokens=max_tokens, seed=seed, **common)
        import httpx

        self.base_url = base_url.rstrip("/")
        self.schema_mode = schema_mode
        self.concurrency = max(1, concurrency)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport,
            limits=httpx.Limits(max_connections=self.concurrency),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> OpenAIStandardizer:
        """A standardizer configured by ``settings.llm.openai_*``; keyword overrides win.

        Raises:
            LLMBackendError: no server URL or model is configured.
        """
        llm = settings.llm
        kwargs: dict[str, Any] = {
            "base_url": llm.openai_base_url,
            "model": llm.openai_model,
            "api_key": llm.openai_api_key,
            "max_tokens": llm.max_tokens,
            "seed": llm.seed,
            "retry_temperature": llm.retry_temperature,
        }
        kwargs.update(overrides)
        if not kwargs["base_url"] or not kwargs["model"]:
            raise LLMBackendError(
                "set CVMATCH_LLM__OPENAI_BASE_URL and CVMATCH_LLM__OPENAI_MODEL for the openai backend"
            )
        return cls(**kwargs)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _body(self, req: _Request, schema: dict[str, Any], name: str) -> dict[str, Any]:
        temperature, seed = self._sampling(req.attempt)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": req.messages,
            "temperature": temperature,
            "seed": seed,
            "max_tokens": self.max_tokens,
        }
        if self.schema_mode == "structured_outputs":
            body["structured_outputs"] = {"json": schema, "disable_any_whitespace": True}
        else:
            # strict=False: OpenAI's strict mode wants every field required, ours have defaults.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False},
            }
        return body

    def _post(self, body: dict[str, Any]) -> _Generation:
        import httpx

        try:
            resp = self._client.post("/chat/completions", json=body)
        except (httpx.ConnectError, httpx.UnsupportedProtocol) as e:
            raise LLMBackendError(f"cannot reach the LLM server at {self.base_url}: {e}") from e
        except httpx.TimeoutException:
            return _Generation("", None, error="request timed out")
        except httpx.HTTPError as e:
            return _Generation("", None, error=f"HTTP transport error ({type(e).__name__})")
        if resp.status_code >= 400:
            # The body can echo the prompt; only its status goes into the reason.
            return _Generation("", None, error=f"server answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            return _Generation("", None, error="malformed chat completion response")
        usage = data.get("usage") or {}
        return _Generation(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )

    def _generate(self, requests: list[_Request], schema: dict[str, Any]) -> list[_Generation]:
        name = "CVProfile" if requests and requests[0].kind == "cv" else "JDProfile"
        bodies = [self._body(r, schema, name) for r in requests]
        if len(bodies) == 1:
            return [self._post(bodies[0])]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies))) as pool:
            return list(pool.map(self._post, bodies))


def make_llm_standardizer(settings: Settings, **overrides: Any) -> LLMStandardizer:
    """The LLM standardizer that ``settings.standardizer`` names ("vllm" or "openai").

    Raises:
        LLMBackendError: the setting names another backend, or the backend is not configured.
    """
    if settings.standardizer == "vllm":
        return VLLMStandardizer.from_settings(settings, **overrides)
    if settings.standardizer == "openai":
        return OpenAIStandardizer.from_settings(settings, **overrides)
    raise LLMBackendError(f"{settings.standardizer!r} is not an LLM backend")
