"""Build the compact skills and job-title lookup shipped in ``taxonomy/data``.

Run once after the source taxonomy changes::

    python -m cvmatch_ray.taxonomy.build --src /work/shared/data/taxonomy \\
        --out cvmatch_ray/taxonomy/data

What is kept, and why (measured on the dotin resume NER set, see
``benchmarks/bench_parse_accuracy.py``):

* Curated rows win every collision; their aliases match anywhere, except the short forms
  that the curated ambiguity list marks as common words ("excel", "spark", "node"...),
  which must be capitalised or sit in a skills context.
* O*NET "Tools Used" rows are physical tools (anvils, brooms, catheters): dropped.
* ESCO language concepts ("Danish") are dropped: languages have their own CV field.
* ESCO, O*NET technology and Linguist rows are kept, but a single plain word from those
  sources counts only if it is the concept's own name ("accounting", "logistics"), and then
  only in a skills context (a skills section, or a list next to other skills); a bare
  acronym ("GIS", "BARS") counts only when written in capitals.
* Blocked short forms ("go", "r", "c", "tf", "word", "oracle"...) are not aliases: they are
  stored apart with their candidate concepts and resolved by the context rules of the
  lookup.

Job titles come from ESCO occupations and O*NET alternate titles. A title alias shared by
several occupations goes to the occupation whose own name it is, else to the one whose
name shares most words with it; an alias with several candidate occupations and no
single best one ("director", "intern", "analyst") is too broad and is dropped.
"""

from __future__ import annotations

import argparse
import collections
import csv
import gzip
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from cvmatch_ray.taxonomy.normalize import lookup_key, phrase_tokens

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAX_ALIAS_TOKENS = 8

# Alias policies, stored as small ints in the built file (see taxonomy.__init__).
STRONG, CASED, CONTEXT = 0, 1, 2

# Priority when two concepts claim the same key: lower wins.
_SOURCE_PRIORITY = {"curated": 0, "linguist": 1, "devicon": 1, "onet_tech": 2, "esco": 3, "onet_content_model": 4}

# Curated "keep" forms that are everyday English words (or units, like "ml"): they count
# when capitalised ("Excel", "ML") or in a skills context, never as "excel at" or "5 ml".
_CASED_KEEP = frozenset(
    "excel unity spark swift rust ruby julia dart pascal delphi apex mocha cucumber helm zoom "
    "blender snowflake illustrator acrobat puppet flask selenium cypress postman playwright pandas "
    "sas node ml ai ui ux qa ts ppt groovy anaconda prometheus confluence elixir lisp looker".split()
)

# Title additions the README lists as missing, and aliases the sources get wrong for CVs.
_EXTRA_TITLES: dict[str, list[str]] = {
    "site reliability engineer": ["sre", "site reliability engineer", "reliability engineer"],
    "product owner": ["product owner", "technical product owner"],
    "software developer": [
        "software engineer", "software developer", "programmer", "full stack developer",
        "full stack engineer", "fullstack developer", "backend developer", "back end developer",
        "backend engineer", "frontend developer", "front end developer", "frontend engineer",
        "application developer", "applications developer", "java developer", "python developer",
        ".net developer", "software development engineer",
    ],
    "accountant": ["accountant", "staff accountant", "senior accountant", "project accountant"],
    "teacher": ["teacher", "school teacher", "classroom teacher"],
    "business analyst": ["business analyst", "business systems analyst"],
}

# Words that state a level, not an occupation; ignored when normalising a title.
SENIORITY_WORDS = frozenset(
    "senior sr snr junior jr jnr principal staff lead trainee entry mid level i ii iii iv v "
    "experienced associate graduate apprentice".split()
)


@dataclass
class _Concept:
    canonical: str
    category: str
    priority: int
    curated: bool
    aliases: list[str] = field(default_factory=list)


def _compact_category(path: str) -> str:
    """A short category: the leaf for technology rows, the skill area for ESCO rows."""
    parts = [p.strip() for p in path.split(" > ") if p.strip()]
    if not parts:
        return ""
    if parts[0] == "ESCO":
        return parts[2] if len(parts) > 2 else parts[-1]
    return parts[-1]


def _is_plain_word(alias: str) -> bool:
    """A single dictionary-looking word ("board", "Leadership"), as opposed to a product name."""
    return bool(re.fullmatch(r"[A-Za-z][a-z]+", alias))


def _is_acronym(alias: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9&./-]*", alias)) and len(alias) <= 6


def _read_blocked(src: Path) -> tuple[dict[str, list[str]], set[str]]:
    """Blocked forms with their candidate canonicals, and the 'kept, needs context' forms."""
    blocked: dict[str, list[str]] = {}
    needs_context: set[str] = set()
    with (src / "ambiguous_aliases.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            reason = row["reason"]
            if reason.startswith("blocked"):
                cands = [c.strip() for c in row["other_candidates"].split(";") if c.strip()]
                blocked[lookup_key(row["alias"])] = cands
            elif reason.startswith("kept as alias, needs context"):
                needs_context.add(lookup_key(row["alias"]))
    return blocked, needs_context


def _read_concepts(src: Path) -> list[_Concept]:
    concepts: list[_Concept] = []
    with (src / "skills_taxonomy.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            sources = row["source"].split("|")
            if set(sources) <= {"onet_tools"}:
                continue  # physical tools, not CV skills
            category = row["category"]
            if "language skills and knowledge" in category and "curated" not in sources:
                continue  # "Danish", "apply foreign languages...": CVProfile.languages covers these
            priority = min(_SOURCE_PRIORITY.get(s, 5) for s in sources)
            aliases = [row["canonical"], *(a for a in row["aliases"].split("|") if a.strip())]
            concepts.append(
                _Concept(
                    canonical=row["canonical"].strip(),
                    category=_compact_category(category),
                    priority=priority,
                    curated="curated" in sources,
                    aliases=aliases,
                )
            )
    return concepts


def _alias_policy(alias: str, key: str, concept: _Concept, needs_context: set[str]) -> int | None:
    """How an alias may match, or None to leave it out."""
    n_tokens = len(phrase_tokens(alias))
    if n_tokens == 0 or n_tokens > MAX_ALIAS_TOKENS:
        return None
    if concept.curated:
        if key in needs_context and key in _CASED_KEEP:
            return CASED
        return STRONG
    if n_tokens > 1:
        return STRONG
    if len(key) <= 2:
        return None  # "IT", "AS": two letters from a broad source are never worth it
    if _is_acronym(alias):
        return CASED
    if _is_plain_word(alias):
        # A lone word that is only an alternative label ("processes" for "perform
        # ground-handling maintenance procedures") is more often noise than the skill.
        return CONTEXT if key == lookup_key(concept.canonical) else None
    return STRONG


def build_skills(src: Path) -> dict:
    """The skills part of the built lookup, as a JSON-ready dict."""
    blocked, needs_context = _read_blocked(src)
    concepts = _read_concepts(src)
    # Curated first, so that equal keys go to the curated concept.
    concepts.sort(key=lambda c: c.priority)
    categories: list[str] = []
    cat_index: dict[str, int] = {}
    canon_index: dict[str, int] = {}
    out_concepts: list[list] = []
    aliases: dict[str, list] = {}
    stats: collections.Counter[str] = collections.Counter()
    for concept in concepts:
        if concept.canonical in canon_index:
            stats["duplicate_canonical"] += 1
            continue
        cat = cat_index.setdefault(concept.category, len(categories))
        if cat == len(categories):
            categories.append(concept.category)
        idx = len(out_concepts)
        canon_index[concept.canonical] = idx
        out_concepts.append([concept.canonical, cat])
        for alias in concept.aliases:
            alias = alias.strip()
            key = lookup_key(alias)
            if not key or key in blocked:
                stats["blocked_or_empty"] += 1
                continue
            policy = _alias_policy(alias, key, concept, needs_context)
            if policy is None:
                stats["dropped"] += 1
                continue
            spaced = " ".join(phrase_tokens(alias))
            prev = aliases.get(key)
            if prev is not None:
                if prev[0] != idx:
                    stats["collision_lost"] += 1
                elif spaced not in prev[2]:
                    prev[2].append(spaced)  # same concept, another token split
                continue
            aliases[key] = [idx, policy, [spaced]]
            stats[f"policy_{policy}"] += 1
    blocked_out: dict[str, list[int]] = {}
    for key, cands in blocked.items():
        ids = [canon_index[c] for c in cands if c in canon_index]
        if ids:
            blocked_out[key] = ids
    logger.info("skills: %d concepts, %d aliases, %d blocked forms; %s",
                len(out_concepts), len(aliases), len(blocked_out), dict(stats))
    # Every key that starts a longer alias (over its token boundaries), so the lookup can
    # stop extending an n-gram as soon as no alias can follow.
    prefixes: set[str] = set()
    for _, _, splits in aliases.values():
        for split in splits:
            acc = ""
            for tok in split.split(" ")[:-1]:
                acc += tok
                prefixes.add(acc)
    keys = sorted(aliases)
    # Columnar, newline-joined: decoding this is ten times faster than a dict of lists.
    return {
        "categories": categories,
        "concepts": [c[0] for c in out_concepts],
        "concept_categories": [c[1] for c in out_concepts],
        "alias_keys": "\n".join(keys),
        "alias_concepts": [aliases[k][0] for k in keys],
        "alias_policies": "".join(str(aliases[k][1]) for k in keys),
        "max_tokens": max(len(s.split(" ")) for v in aliases.values() for s in v[2]),
        "prefixes": "\n".join(sorted(prefixes)),
        "blocked": blocked_out,
    }


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def build_titles(src: Path) -> dict:
    """The job-title part of the built lookup, as a JSON-ready dict."""
    rows: list[tuple[str, list[str], bool]] = []
    with (src / "job_titles.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            aliases = [a for a in row["aliases"].split("|") if a.strip()]
            rows.append((row["canonical_title"].strip(), aliases, row["source"].startswith("esco")))
    canon_idx: dict[str, int] = {}
    titles: list[str] = []
    for canonical, _, _ in rows:
        canon_idx.setdefault(canonical, len(titles))
        if canon_idx[canonical] == len(titles):
            titles.append(canonical)
    for canonical in _EXTRA_TITLES:
        if canonical not in canon_idx:
            canon_idx[canonical] = len(titles)
            titles.append(canonical)

    # key -> candidates (title index, alias is that title's own name, from ESCO)
    candidates: dict[str, list[tuple[int, bool, bool]]] = collections.defaultdict(list)
    for canonical, aliases, esco in rows:
        t = canon_idx[canonical]
        for alias in [canonical, *aliases]:
            key = lookup_key(alias)
            if key:
                candidates[key].append((t, alias == canonical, esco))
    resolved: dict[str, int] = {}
    dropped = 0
    for key, cands in candidates.items():
        uniq = {c[0]: c for c in sorted(cands, key=lambda c: (not c[1], not c[2]))}
        if len(uniq) == 1:
            resolved[key] = next(iter(uniq))
            continue
        own = [c for c in uniq.values() if c[1]]
        if own:
            resolved[key] = own[0][0]
            continue
        # The alias's own words, rebuilt from any title whose key it is (keys lose spaces).
        words = {_stem(w) for w in _alias_words(key, rows)}
        scored = sorted(
            uniq.values(),
            key=lambda c: (-len(words & {_stem(w) for w in phrase_tokens(titles[c[0]])}), not c[2]),
        )
        overlaps = [len(words & {_stem(w) for w in phrase_tokens(titles[c[0]])}) for c in scored]
        if overlaps[0] == 0 or overlaps[1] == overlaps[0]:
            dropped += 1  # broad: "director", "intern", "analyst"
            continue
        resolved[key] = scored[0][0]
    for canonical, aliases in _EXTRA_TITLES.items():
        for alias in aliases:
            resolved[lookup_key(alias)] = canon_idx[canonical]

    # Words that end many titles ("manager", "engineer"): the parser's hint that a line is a title.
    heads: collections.Counter[str] = collections.Counter()
    for canonical, aliases, _ in rows:
        for alias in [canonical, *aliases]:
            toks = phrase_tokens(alias)
            if toks:
                heads[_stem(toks[-1])] += 1
    head_words = sorted(w for w, n in heads.items() if n >= 25 and len(w) > 2 and not w.isdigit())
    logger.info("titles: %d occupations, %d aliases (%d too broad, dropped), %d head words",
                len(titles), len(resolved), dropped, len(head_words))
    return {"titles": titles, "aliases": resolved, "head_words": head_words,
            "seniority_words": sorted(SENIORITY_WORDS)}


_ALIAS_WORDS_CACHE: dict[int, dict[str, list[str]]] = {}


def _alias_words(key: str, rows: list[tuple[str, list[str], bool]]) -> list[str]:
    cache = _ALIAS_WORDS_CACHE.get(id(rows))
    if cache is None:
        cache = {}
        for canonical, aliases, _ in rows:
            for alias in [canonical, *aliases]:
                cache.setdefault(lookup_key(alias), phrase_tokens(alias))
        _ALIAS_WORDS_CACHE[id(rows)] = cache
    return cache.get(key, [])


def build(src: Path, out: Path) -> dict[str, int]:
    """Build ``skills.json.gz`` and ``titles.json.gz`` from the source taxonomy folder.

    Args:
        src: the shared taxonomy folder (``skills_taxonomy.csv``, ``job_titles.csv``,
            ``ambiguous_aliases.csv``).
        out: the package data folder to write.

    Returns:
        Bytes written per file name.
    """
    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    payloads = {
        "skills.json.gz": {"version": FORMAT_VERSION, **build_skills(src)},
        "titles.json.gz": {"version": FORMAT_VERSION, **build_titles(src)},
    }
    for name, payload in payloads.items():
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        # mtime=0 keeps the gzip bytes identical across rebuilds of the same data.
        data = gzip.compress(raw, compresslevel=9, mtime=0)
        (out / name).write_bytes(data)
        sizes[name] = len(data)
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, required=True, help="shared taxonomy folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sizes = build(args.src, args.out)
    for name, size in sizes.items():
        logger.info("wrote %s (%d bytes)", args.out / name, size)


if __name__ == "__main__":
    main()
