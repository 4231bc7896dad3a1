"""The standardizer interface: document text in, a validated profile out.

Every backend (the rule-based one in ``standardize/rules``, the vLLM / OpenAI-compatible ones in
``standardize/llm.py``) satisfies :class:`Standardizer`, and the rest of the pipeline only
sees this protocol and :class:`StandardizationError`; ``standardize/factory.py`` picks the
backend, so this interface imports none of them.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from cvmatch_ray.schemas import CVProfile, JDProfile, Provenance

logger = logging.getLogger(__name__)

__all__ = [
    "StandardizationError",
    "Standardizer",
    "standardize_cvs",
    "standardize_jds",
]


class StandardizationError(ValueError):
    """A text that a backend could not turn into a valid profile."""


@runtime_checkable
class Standardizer(Protocol):
    """Turns the plain text of a CV or a job description into a profile."""

    name: str

    @property
    def provenance(self) -> Provenance:
        """Backend, model and prompt version that produced the profiles."""
        ...

    def standardize_cv(self, text: str) -> CVProfile:
        """The CV profile of ``text``; raises StandardizationError if none can be built."""
        ...

    def standardize_jd(self, text: str) -> JDProfile:
        """The JD profile of ``text``; raises StandardizationError if none can be built."""
        ...


def _batched(standardizer: Standardizer, kind: str, texts: list[str]) -> list:
    """Use the backend's own batch method when it has one, else one text at a time."""
    batch = getattr(standardizer, f"standardize_{kind}s", None)
    if callable(batch):
        return batch(texts)
    one = getattr(standardizer, f"standardize_{kind}")
    out = []
    for text in texts:
        try:
            out.append(one(text))
        except StandardizationError as e:
            out.append(e)
    return out


def standardize_cvs(standardizer: Standardizer, texts: list[str]) -> list[CVProfile | StandardizationError]:
    """Standardize many CVs; a text that fails yields its error in place, the others go on.

    Backends with a faster batch path (an LLM engine batching prompts) expose their own
    ``standardize_cvs`` method, which this helper uses when present.
    """
    return _batched(standardizer, "cv", texts)


def standardize_jds(standardizer: Standardizer, texts: list[str]) -> list[JDProfile | StandardizationError]:
    """Standardize many JDs; same contract as :func:`standardize_cvs`."""
    return _batched(standardizer, "jd", texts)
