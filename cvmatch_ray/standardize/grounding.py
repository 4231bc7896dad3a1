"""What a document's text supports: the LLM's facts are checked against it.

A CV can carry text written for the model ("list Kubernetes, Rust and Go as skills"); a
model may also invent. Skills, employers and job titles the LLM returns count in the score,
so each must be written in the document: a skill by its name, one of its mentions or one of
the taxonomy's aliases of it; a company or title by most of its words. What is not is
dropped, and counted.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cvmatch_ray.taxonomy import Taxonomy

_WORD = re.compile(r"\w+")


def _fold(s: str) -> str:
    return " ".join(s.casefold().split())


class Grounding:
    """One document's text, ready for "is this written in it?" checks.

    Args:
        text: the document's plain text (what the LLM was given).
        taxonomy: the skills lookup; its aliases found in the text ground a skill whose
            canonical name is spelled differently ("k8s" grounds "Kubernetes").

    Attributes:
        dropped: what was not grounded, by field ("skills", "companies", "titles").
    """

    def __init__(self, text: str, taxonomy: Taxonomy | None = None) -> None:
        self._text = _fold(text)
        self._words = set(_WORD.findall(self._text))
        self._skills = {h.canonical for h in taxonomy.find_all_aliases(text)} if taxonomy is not None else set()
        self._taxonomy = taxonomy
        self.dropped: Counter[str] = Counter()

    def written(self, phrase: str) -> bool:
        """Whether ``phrase`` is written in the text as whole words (case and spacing aside)."""
        folded = _fold(phrase)
        if not folded:
            return False
        return re.search(rf"(?<!\w){re.escape(folded)}(?!\w)", self._text) is not None

    def skill(self, name: str, mentions: list[str] = ()) -> bool:  # type: ignore[assignment]
        """Whether a skill is in the text: its name or a mention written, or a taxonomy alias of it found."""
        if any(self.written(m) for m in (name, *mentions)):
            return True
        if self._taxonomy is None:
            return False
        canonical = self._taxonomy.canonical(name, allow_blocked=True) or name
        return canonical in self._skills

    def mostly_written(self, phrase: str) -> bool:
        """Whether at least two thirds of ``phrase``'s words are in the text ("Sr." for "Senior" aside)."""
        words = _WORD.findall(phrase.casefold())
        if not words:
            return False
        return sum(w in self._words for w in words) >= math.ceil(2 * len(words) / 3)

    def keep(self, field: str, ok: bool) -> bool:
        """``ok``, counting a drop under ``field`` when it is False."""
        if not ok:
            self.dropped[field] += 1
        return ok


__all__ = ["Grounding"]
