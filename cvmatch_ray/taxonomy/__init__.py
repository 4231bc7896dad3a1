"""Skills and job-title lookup, built from the shared ESCO / O*NET / curated taxonomy.

``load_taxonomy()`` reads the compact files in ``taxonomy/data`` once per process (see
``taxonomy/build.py`` for what they keep). ``Taxonomy.find_skills`` is an n-gram lookup
over the tokens of ``taxonomy.normalize``: longest match wins, then each candidate is
accepted according to its alias policy:

* strong aliases ("Kubernetes", "k8s", "PostgreSQL") count anywhere;
* cased aliases ("Excel", "Spark", "ML") count when written with a capital, or in a
  skills context;
* upper-case aliases (acronyms from broad sources: "GIS", "ARTS") count only when written
  in capitals on a line that is not all capitals (or in a skills section);
* context aliases (single plain words from broad sources: "leadership", "logistics")
  count only in a skills context;
* blocked short forms ("Go", "R", "C", "Word", "Oracle"...) count only when written with
  a capital, standing as a whole list item (so never "C-level", "R&D", "grade C" or
  "C++"), and inside a skills section or next to another accepted skill.

A skills context is a skills section (``section=Section.skills``) or a list: the
candidate is separated from an accepted skill only by commas, slashes, bullets, "and"...
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources

from cvmatch_ray.schemas import Section
from cvmatch_ray.taxonomy.normalize import lookup_key, phrase_tokens, tokenize

logger = logging.getLogger(__name__)

__all__ = ["SkillHit", "Taxonomy", "TaxonomyError", "load_taxonomy"]

_FORMAT_VERSION = 1
# Alias policies as stored by build.py, plus the lookup's own marker for blocked forms.
_STRONG, _CASED, _CONTEXT, _UPPER, _BLOCKED = 0, 1, 2, 3, 9

# What may sit between two tokens of one multi-word alias: spaces, or one joining mark
# ("node.js", "CI/CD", "A/B", "e-mail"). Commas, newlines and brackets end a phrase.
_JOIN_GAP = re.compile(r"[ \t]*[-./&'’_]?[ \t]*")
_JOIN_CHARS = frozenset(" \t-./&'’_")
# What may sit between two items of a list.
_LIST_GAP = re.compile(r"[\s,;/|•·&+()\[\]\-–—:*]*(?:\b(?:and|or)\b[\s,;/|•·:]*)?", re.IGNORECASE)
# A whole list item starts after one of these (or at the start of the text/line)...
_ITEM_BEFORE = re.compile(r"(?:^|[\n,;/|•·:(\[*>\-–—]|\band|\bor)[ \t]*$", re.IGNORECASE)
# ...and ends before one of these.
_ITEM_AFTER = re.compile(r"^[ \t]*(?:$|[\n,;/|•·)\]]|\.(?:\s|$)|\band\b|\bor\b)", re.IGNORECASE)


class TaxonomyError(RuntimeError):
    """The built taxonomy files are missing or do not match this code."""


@dataclass(frozen=True, slots=True)
class SkillHit:
    """One skill found in a text: the canonical concept and where it was written."""

    canonical: str
    category: str | None
    surface: str
    start: int
    end: int


@dataclass(slots=True)
class _Cand:
    start: int
    end: int
    concepts: tuple[int, ...]
    policy: int
    accepted: bool = False


class Taxonomy:
    """Read-only skills and titles lookup. Build one with :func:`load_taxonomy`."""

    def __init__(self, skills: dict, titles: dict) -> None:
        """Wrap the decoded ``skills.json.gz`` and ``titles.json.gz`` payloads."""
        for name, payload in (("skills", skills), ("titles", titles)):
            if payload.get("version") != _FORMAT_VERSION:
                raise TaxonomyError(f"{name} data has version {payload.get('version')!r}, "
                                    f"expected {_FORMAT_VERSION}: rebuild taxonomy/data")
        self._categories: list[str] = skills["categories"]
        self._concepts: list[tuple[str, int]] = list(zip(skills["concepts"], skills["concept_categories"], strict=True))
        self._canon_index: dict[str, int] = {c: i for i, c in enumerate(skills["concepts"])}
        policies = [int(p) for p in skills["alias_policies"]]
        self._aliases: dict[str, tuple[int, int]] = dict(
            zip(skills["alias_keys"].split("\n"), zip(skills["alias_concepts"], policies, strict=True), strict=True)
        )
        self._prefixes: frozenset[str] = frozenset(skills["prefixes"].split("\n"))
        self._max_tokens: int = skills["max_tokens"]
        self._blocked: dict[str, tuple[int, ...]] = {k: tuple(v) for k, v in skills["blocked"].items()}
        self._titles: list[str] = titles["titles"]
        self._title_aliases: dict[str, int] = titles["aliases"]
        self.title_head_words: frozenset[str] = frozenset(titles["head_words"])
        self.seniority_words: frozenset[str] = frozenset(titles["seniority_words"])

    # ------------------------------------------------------------------ skills

    def __len__(self) -> int:
        return len(self._concepts)

    def canonical(self, name: str, *, allow_blocked: bool = False) -> str | None:
        """The canonical skill for a name or alias ("k8s" -> "Kubernetes"), else None.

        Args:
            name: a skill name as written.
            allow_blocked: also resolve blocked short forms ("Go", "R", "Word") to their
                first candidate; use it when the name is already known to be a skill (an
                item of a skills list, an LLM's output). Without it they return None.
        """
        if name in self._canon_index:
            return name
        key = lookup_key(name)
        hit = self._aliases.get(key)
        if hit is not None:
            return self._concepts[hit[0]][0]
        if allow_blocked and key in self._blocked:
            return self._concepts[self._blocked[key][0]][0]
        return None

    def category(self, canonical: str) -> str | None:
        """The compact category of a canonical skill ("Programming language"), else None."""
        idx = self._canon_index.get(canonical)
        if idx is None:
            return None
        return self._categories[self._concepts[idx][1]] or None

    def is_known(self, name: str) -> bool:
        """Whether a name is a canonical skill or one of its aliases."""
        return self.canonical(name) is not None

    def find_skills(self, text: str, *, section: Section | None = None) -> list[SkillHit]:
        """Find the skills mentioned in ``text``, in order of appearance.

        Args:
            text: a document or a part of one (offsets refer to this string).
            section: the section the text comes from; ``Section.skills`` relaxes the
                context rules (everything in a skills section is a skills context).

        Returns:
            One hit per accepted mention; overlapping mentions resolved longest first.
        """
        toks = tokenize(text)
        cands = self._candidates(text, toks)
        if not cands:
            return []
        in_skills = section == Section.skills
        self._resolve(text, cands, in_skills)
        hits: list[SkillHit] = []
        for c in cands:
            if not c.accepted:
                continue
            concept = self._pick(c, cands)
            canonical, cat = self._concepts[concept]
            hits.append(SkillHit(canonical, self._categories[cat] or None, text[c.start:c.end], c.start, c.end))
        return hits

    def find_all_aliases(self, text: str) -> list[SkillHit]:
        """Every alias and blocked form in ``text``, longest first, with no context rules.

        This is the naive lookup that ``find_skills`` refines; benchmarks use it as their
        baseline. Blocked forms resolve to their first candidate.
        """
        hits: list[SkillHit] = []
        for c in self._candidates(text, tokenize(text)):
            canonical, cat = self._concepts[c.concepts[0]]
            hits.append(SkillHit(canonical, self._categories[cat] or None, text[c.start:c.end], c.start, c.end))
        return hits

    def _candidates(self, text: str, toks: list[tuple[int, int, str]]) -> list[_Cand]:
        n = len(toks)
        # joinable[j]: token j may continue a phrase started before it.
        joinable = [False] * n
        for j in range(1, n):
            gap_start, gap_end = toks[j - 1][1], toks[j][0]
            width = gap_end - gap_start
            if width == 1:
                joinable[j] = text[gap_start] in _JOIN_CHARS
            elif width <= 3:
                joinable[j] = _JOIN_GAP.fullmatch(text, gap_start, gap_end) is not None
        aliases, prefixes, blocked = self._aliases, self._prefixes, self._blocked
        max_tokens = self._max_tokens
        out: list[_Cand] = []
        i = 0
        while i < n:
            key = ""
            best: tuple[int, tuple[int, int]] | None = None
            stop = i + max_tokens if i + max_tokens < n else n
            for j in range(i, stop):
                if j > i and not joinable[j]:
                    break
                key += toks[j][2]
                hit = aliases.get(key)
                if hit is not None:
                    best = (j, hit)
                if key not in prefixes:
                    break
            if best is not None:
                j, (concept, policy) = best
                out.append(_Cand(toks[i][0], toks[j][1], (concept,), policy))
                i = j + 1
                continue
            ids = blocked.get(toks[i][2])
            if ids is not None:
                out.append(_Cand(toks[i][0], toks[i][1], ids, _BLOCKED))
            i += 1
        return out

    @staticmethod
    def _resolve(text: str, cands: list[_Cand], in_skills: bool) -> None:
        """Mark accepted candidates: policy first, then list context until nothing changes."""
        pending: list[int] = []
        for k, c in enumerate(cands):
            surface = text[c.start:c.end]
            if c.policy == _STRONG or (c.policy == _CASED and not surface.islower()):
                c.accepted = True
            elif c.policy == _UPPER:
                # An acronym from a broad source ("ARTS", "CASE", "SAN"): written in capitals,
                # and not inside a line that is all capitals (a heading, "BACHELOR OF ARTS").
                if surface.isupper() and (in_skills or _line_has_lower(text, c.start, c.end)):
                    c.accepted = True
            elif c.policy == _BLOCKED:
                # Capitalised and a whole list item, or nothing: never "go", "C-level", "R&D".
                if (not surface.islower()
                        and _ITEM_BEFORE.search(text, max(0, c.start - 12), c.start) is not None
                        and _ITEM_AFTER.match(text[c.end:c.end + 6]) is not None):
                    pending.append(k)
            elif in_skills:
                c.accepted = True
            else:
                pending.append(k)
        changed = True
        while pending and changed:
            changed = False
            still: list[int] = []
            for k in pending:
                c = cands[k]
                if (in_skills and c.policy == _BLOCKED) or _next_to_accepted(text, cands, k):
                    c.accepted = True
                    changed = True
                else:
                    still.append(k)
            pending = still

    def _pick(self, cand: _Cand, cands: list[_Cand]) -> int:
        """One concept for a candidate; a blocked form with several ("tf") follows its neighbours."""
        if len(cand.concepts) == 1:
            return cand.concepts[0]
        seen = Counter(self._concepts[c.concepts[0]][1] for c in cands if c.accepted and len(c.concepts) == 1)
        return max(cand.concepts, key=lambda cid: seen.get(self._concepts[cid][1], 0))

    # ------------------------------------------------------------------ titles

    def normalize_title(self, title: str, *, strict: bool = False) -> str | None:
        """The canonical occupation for a job title, ignoring seniority words.

        "Sr. Software Engineer II" -> "software developer". Text after " - ", " | ", " at ",
        "," or "(" is taken as a company or a note and ignored.

        Args:
            title: a job title as written.
            strict: only accept the whole title (minus seniority words) as a known alias;
                otherwise fall back to its longest known ending ("Oracle Fusion HCM
                functional consultant" -> the occupation of "functional consultant").

        Returns:
            The canonical occupation title, or None if nothing matches.
        """
        head = re.split(r"\s[-–—|@]\s|\s+at\s+|[,(/;]", title, maxsplit=1)[0] if title else ""
        toks = phrase_tokens(head)
        if not toks:
            return None
        idx = self._title_aliases.get("".join(toks))
        if idx is None:
            core = [t for t in toks if t not in self.seniority_words]
            if not core:
                return None
            idx = self._title_aliases.get("".join(core))
            if idx is None and not strict:
                for s in range(1, len(core)):
                    idx = self._title_aliases.get("".join(core[s:]))
                    if idx is not None:
                        break
        return self._titles[idx] if idx is not None else None

    def looks_like_title(self, text: str) -> bool:
        """Whether a short phrase reads as a job title (a known title, or ends with a title word)."""
        toks = phrase_tokens(text)
        if not toks or len(toks) > 8:
            return False
        if self.normalize_title(text, strict=True) is not None:
            return True
        last = toks[-1]
        return (last[:-1] if last.endswith("s") and len(last) > 3 else last) in self.title_head_words


def _line_has_lower(text: str, start: int, end: int) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start:line_end if line_end >= 0 else len(text)]
    return any(ch.islower() for ch in line)


def _next_to_accepted(text: str, cands: list[_Cand], k: int) -> bool:
    """Whether candidate k is a list neighbour of an accepted candidate on the same line."""
    c = cands[k]
    if k > 0:
        p = cands[k - 1]
        if p.accepted and _LIST_GAP.fullmatch(text, p.end, c.start) and "\n" not in text[p.end:c.start]:
            return True
    if k + 1 < len(cands):
        nx = cands[k + 1]
        if nx.accepted and _LIST_GAP.fullmatch(text, c.end, nx.start) and "\n" not in text[c.end:nx.start]:
            return True
    return False


def _read(name: str) -> dict:
    ref = resources.files("cvmatch_ray.taxonomy") / "data" / name
    try:
        with ref.open("rb") as f:
            return json.loads(gzip.decompress(f.read()))
    except FileNotFoundError as e:
        raise TaxonomyError(f"taxonomy data file {name} is missing: run python -m cvmatch_ray.taxonomy.build") from e


@functools.lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """The shipped taxonomy, loaded once per process."""
    tax = Taxonomy(_read("skills.json.gz"), _read("titles.json.gz"))
    logger.info("taxonomy loaded: %d skills, %d job titles", len(tax), len(tax._titles))
    return tax
