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
* ESCO transversal skills ("be responsible", "help people", "work-life balance") are
  dropped: soft-skill phrases that any sentence contains add noise to matching.
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
STRONG, CASED, CONTEXT, UPPER = 0, 1, 2, 3

# Priority when two concepts claim the same key: lower wins.
_SOURCE_PRIORITY = {"curated": 0, "linguist": 1, "devicon": 1, "onet_tech": 2, "esco": 3, "onet_content_model": 4}

# Curated "keep" forms that are everyday English words (or units, like "ml"): they count
# when capitalised ("Excel", "ML") or in a skills context, never as "excel at" or "5 ml".
_CASED_KEEP = frozenset(
    "excel unity spark swift rust ruby julia dart pascal delphi apex mocha cucumber helm zoom "
    "blender snowflake illustrator acrobat puppet flask selenium cypress postman playwright pandas "
    "sas node ml ai ui ux qa ts ppt groovy anaconda prometheus confluence elixir lisp looker safe".split()
)

# Vendors whose product names O*NET prefixes ("Adobe Dreamweaver", "IBM Cognos"): CVs often
# write the product alone, so the name without the vendor is added as an alias.
_VENDORS = (
    "Adobe Systems", "Adobe", "Microsoft", "IBM", "Oracle", "Apache", "Autodesk", "SAP", "Google", "Apple",
    "Amazon", "Corel", "Cisco", "Symantec", "Siemens", "ESRI", "Trimble", "Bentley", "Cadence", "Infor", "PTC",
    "Synopsys", "Avid", "Atlassian", "Salesforce", "Intuit", "Hewlett-Packard", "Hewlett Packard", "HP",
    "Sun Microsystems", "Red Hat", "VMware", "Citrix", "Micro Focus", "Dassault Systemes", "Novell", "Sage",
    "ToadSoft", "Mentor Graphics", "National Instruments", "Bentley Systems", "The MathWorks", "MathWorks",
)
# Everyday words that a vendor-less product name may be ("Access", "Project"): context only.
_COMMON_PRODUCT_WORDS = frozenset(
    "access word outlook project publisher teams office paint photos notes forms lists mail calendar money "
    "works server windows live edge store flash pig toad planning impromptu draw connect designer studio "
    "analyzer manager reader player writer viewer explorer". split()
)

# Skills the sources miss or spell only with a vendor, written for this project. Format:
# "Canonical | category | alias; alias". An alias prefixed with "~" only counts in a skills
# context (a plain word like "marketing"). A canonical that already exists gains the aliases.
_EXTRA_SKILLS = """
Java EE | Back-end framework / runtime | j2ee; jee; java ee; jakarta ee; java 2 enterprise edition; j2ee technologies
JavaServer Pages | Back-end framework / runtime | jsp; jsps; java server pages
Java Servlets | Back-end framework / runtime | servlets; servlet; java servlet; java servlets
Enterprise JavaBeans | Back-end framework / runtime | ejb; ejbs; ejb3; enterprise java beans
Apache Struts | Back-end framework / runtime | struts; struts2; struts 2; struts framework
Java Swing | Front-end framework | java swing; ~swing
DHTML | Markup / styling | dynamic html
Oracle WebLogic Server | Application server | weblogic; bea weblogic; weblogic server
ToadSoft Toad | Database | toad for oracle; ~toad
Service-oriented architecture | Architecture | soa; service oriented architecture
Web services | API / integration | web service; webservices; soap web services
Model-view-controller | Architecture | mvc; model view controller; mvc architecture; mvc framework
MS-DOS | Operating system | msdos; ms dos
Oracle Solaris | Operating system | solaris; sun solaris
HP Quality Center | Software testing | quality center; hp qc; hp alm; hp quality centre; qc alm
Adobe Dreamweaver | Design / multimedia / CAD | dreamweaver; macromedia dreamweaver
Adobe Flash | Design / multimedia / CAD | macromedia flash; adobe flash player; ~flash
Microsoft Publisher | Office / productivity | ms publisher; ~publisher
Microsoft Access | Database | ~access
Microsoft Exchange Server | Messaging / streaming | exchange server; ms exchange; microsoft exchange; exchange server 2007; exchange server 2010; exchange 2010
LAMP stack | Back-end framework / runtime | lamp; lamp stack
Apache Ant | Build / package tool | ~ant
Software development life cycle | Software engineering | sdlc; software development lifecycle; system development life cycle; systems development life cycle
Mockito | Software testing | mockito framework
CorelDRAW | Design / multimedia / CAD | corel draw; coreldraw graphics suite
Tally ERP | Finance / accounting | tally erp 9; tally.erp 9; tally erp; tally 9; ~tally
SAP FICO | ERP / CRM software | sap fi/co; sap fi co; sap fico module; sap fi
ANSYS | Design / multimedia / CAD | ansys workbench; ansys fluent
IBM InfoSphere DataStage | Data engineering | datastage; ibm datastage
IBM Cognos | Business intelligence / analytics | cognos; cognos bi
Apache Pig | Data engineering | pig latin; ~pig
Apache Sqoop | Data engineering | sqoop
Apache Flume | Data engineering | flume
Oracle Database | Database | oracle 8i; oracle 9i; oracle 10g; oracle 18c; oracle 11g r2; oracle sql
Microsoft Windows | Operating system | windows 7; windows 8; windows 10; windows 11; windows vista; windows 98; windows 2000; windows nt; ms windows
macOS | Operating system | ~mac; mac os x; osx
Marketing | Marketing | ~marketing; marketing strategy; marketing campaigns
Sales | Business | ~sales; sales management; direct sales; b2b sales
Software testing | Software testing | ~testing
Computer networking | Networking | ~networking; network administration; computer networks
E-commerce | Web CMS / e-commerce | ecommerce; e commerce; electronic commerce; online retail
Social media | Marketing | social media; social networking sites; social media platforms
Web development | Software engineering | web development; web application development; web programming
Software development | Software engineering | software development; software engineering; application development
Regression testing | Software testing | regression tests
Configuration management | DevOps / infrastructure | software configuration management; scm tools
Test case design | Software testing | test cases; test case; test case preparation; test case writing; test scenarios
Scripting | Programming language | ~scripting; scripting languages
Business development | Business | business development; biz dev; new business development
Lead generation | Marketing | lead generation; generating leads
Team management | Business | team management; managing teams; people management
Payroll | Finance / accounting | ~payroll; payroll processing; payroll management
Recruitment | Human resources | ~recruitment; ~recruiting; talent acquisition; recruitment and selection; hiring
Employee onboarding | Human resources | onboarding; new hire onboarding; employee onboarding
Employee relations | Human resources | employee relations; labour relations; labor relations
Bookkeeping | Finance / accounting | book keeping; bookkeeping
Requirements analysis | Business analysis | requirement analysis; requirements gathering; requirement gathering; requirements elicitation
Inventory management | Logistics | inventory control; stock management; inventory management
Vendor management | Business | vendor management; supplier management; vendor relations
Budgeting | Finance / accounting | ~budgeting; budget management; budget preparation; budget planning
Financial reporting | Finance / accounting | financial reports; financial statements preparation; financial reporting
Auditing | Finance / accounting | ~auditing; internal audit; internal auditing; external audit
Taxation | Finance / accounting | ~taxation; tax preparation; tax returns; income tax
Bank reconciliation | Finance / accounting | bank reconciliations; account reconciliation; account reconciliations; reconciliations
Technical support | IT support | technical support; tech support; it support; help desk; helpdesk; desktop support
System administration | IT support | system administration; systems administration; sysadmin; server administration
Data entry | Office / productivity | data entry; data entry operations
Video editing | Design / multimedia / CAD | video editing; video production
Copywriting | Marketing | copywriting; copy writing; content writing
Event management | Business | event management; event planning; event coordination
Curriculum development | Education | curriculum development; curriculum design; lesson planning
Classroom management | Education | classroom management
Patient care | Healthcare | patient care; patient assessment
"""

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


_FUNCTION_WORDS = frozenset("and or of the to with for in on a an by at as from into".split())


def _is_plain_word(alias: str) -> bool:
    """A single dictionary-looking word ("board", "Leadership"), as opposed to a product name."""
    return bool(re.fullmatch(r"[A-Za-z][a-z]+", alias))


def _is_acronym(alias: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9&./-]*", alias)) and len(alias) <= 6


def _read_blocked(src: Path) -> dict[str, list[str]]:
    """Blocked forms with their candidate canonicals.

    The file's "kept as alias, needs context" rows are not read: which of those must be
    capitalised is decided by ``_CASED_KEEP`` (everyday words only, not "docker").
    """
    blocked: dict[str, list[str]] = {}
    with (src / "ambiguous_aliases.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["reason"].startswith("blocked"):
                cands = [c.strip() for c in row["other_candidates"].split(";") if c.strip()]
                blocked[lookup_key(row["alias"])] = cands
    return blocked


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
            if "transversal skills" in category and "curated" not in sources:
                # "be responsible", "help people", "work-life balance": soft skills that any
                # JD or CV sentence mentions; they add noise to matching, not signal.
                continue
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


def _read_extras() -> list[tuple[str, str, list[tuple[str, int]]]]:
    out = []
    for line in _EXTRA_SKILLS.strip().splitlines():
        canonical, category, aliases = (p.strip() for p in line.split("|"))
        items = []
        for alias in (a.strip() for a in aliases.split(";") if a.strip()):
            items.append((alias[1:], CONTEXT) if alias.startswith("~") else (alias, STRONG))
        out.append((canonical, category, items))
    return out


# Acronyms too generic to stand for one product ("Lindo API", "Sage CRM").
_GENERIC_ACRONYMS = frozenset(
    "API SDK ERP CRM CAD CAM GIS EHR EMR LMS PDF SQL IDE CMS PC OS DBMS RDBMS POS WMS TMS MRP BI ETL VPN XML "
    "HTML CSS UI AI ML HCM HRIS HRMS SCM PLM EDI GPS RFID LIMS PACS RIS CAE CFD FEA".split()
)


def _english_vocabulary(concepts: list[_Concept]) -> frozenset[str]:
    """Words of the lower-case ESCO labels: a stand-in for an English dictionary.

    ESCO labels are plain English phrases ("operate drilling equipment"), so a product name
    made only of their words ("Operating System", "Reports", "Drive") is a generic phrase,
    while one with a word they never use ("Dreamweaver", "Cognos") is a proper name.
    """
    vocab: set[str] = set()
    for concept in concepts:
        if concept.priority != _SOURCE_PRIORITY["esco"]:
            continue
        for alias in concept.aliases:
            if alias.islower():
                vocab.update(phrase_tokens(alias))
    return frozenset(vocab)


def _derived_aliases(name: str, vocab: frozenset[str]) -> list[tuple[str, int]]:
    """Shorter names CVs use for an O*NET product: without the vendor, or its trailing acronym."""
    out: list[tuple[str, int]] = []
    for vendor in _VENDORS:
        if name.startswith(vendor + " "):
            rest = name[len(vendor) + 1:].strip()
            if rest.startswith(vendor.split()[0] + " "):
                rest = rest[len(vendor.split()[0]) + 1:]  # "Adobe Systems Adobe Dreamweaver"
            toks = phrase_tokens(rest)
            if not toks or len("".join(toks)) < 3 or all(t in vocab for t in toks):
                break  # "Microsoft Operating System" -> "Operating System" would be noise
            if len(toks) > 1:
                out.append((rest, STRONG))
            elif rest.lower() in _COMMON_PRODUCT_WORDS:
                out.append((rest, CONTEXT))
            else:
                out.append((rest, UPPER if rest.isupper() else CASED))
            break
    words = name.split()
    # "Oracle JavaServer Pages JSP": the acronym at the end names the product too.
    if (len(words) >= 3 and re.fullmatch(r"[A-Z][A-Z0-9]{2,5}", words[-1])
            and words[-1] not in _GENERIC_ACRONYMS and not _ROMAN.match(words[-1])
            and words[-1].lower() not in vocab):
        out.append((words[-1], UPPER))
        out.append((" ".join(words[:-1]), STRONG))
    return out


_ROMAN = re.compile(r"^[IVXL]+$")


def _alias_policy(
    alias: str, key: str, concept: _Concept, vocab: frozenset[str]
) -> int | None:
    """How an alias may match, or None to leave it out."""
    toks = phrase_tokens(alias)
    if not toks or len(toks) > MAX_ALIAS_TOKENS:
        return None
    if concept.curated:
        return CASED if key in _CASED_KEEP else STRONG
    is_canonical = key == lookup_key(concept.canonical)
    if len(toks) > 1:
        if toks[0] in _FUNCTION_WORDS or toks[-1] in _FUNCTION_WORDS:
            return None  # label debris such as "and procedures"
        if key in vocab:
            return None  # "use RS" has the key of the word "users"
        if concept.priority == _SOURCE_PRIORITY["onet_tech"] and not is_canonical and all(t in vocab for t in toks):
            return None  # "Loss Prevention" as the short name of one vendor's product
        return STRONG
    if len(key) <= 2 or _ROMAN.match(alias):
        return None  # "IT", "AS", "III": too short or a numeral
    if key in vocab:
        # An English word ("profile", "assembly"): only the concept's own name, or a
        # language name, and only in a skills context.
        linguist = concept.priority == _SOURCE_PRIORITY["linguist"]
        return CONTEXT if is_canonical or linguist else None
    if _is_acronym(alias):
        return UPPER
    if _is_plain_word(alias):
        # A lone word that is only an alternative label ("processes" for "perform
        # ground-handling maintenance procedures") is more often noise than the skill.
        return CONTEXT if is_canonical else None
    return STRONG


def build_skills(src: Path) -> dict:
    """The skills part of the built lookup, as a JSON-ready dict."""
    blocked = _read_blocked(src)
    concepts = _read_concepts(src)
    # Curated first, so that equal keys go to the curated concept.
    concepts.sort(key=lambda c: c.priority)
    vocab = _english_vocabulary(concepts)
    by_name = {c.canonical: c for c in concepts}
    extra_policy: dict[str, int] = {}
    for canonical, category, items in _read_extras():
        concept = by_name.get(canonical)
        if concept is None:
            concept = _Concept(canonical, category, 0, True, [])
            concepts.insert(0, concept)
            by_name[canonical] = concept
        else:
            concept.priority, concept.curated = 0, True
        for alias, policy in items:
            concept.aliases.insert(0, alias)
            extra_policy[lookup_key(alias)] = policy
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
            policy = extra_policy.get(key) if key in extra_policy else _alias_policy(alias, key, concept, vocab)
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
    def add(key: str, spaced: str, idx: int, policy: int) -> None:
        prev = aliases.get(key)
        if prev is None:
            aliases[key] = [idx, policy, [spaced]]
            stats[f"policy_{policy}"] += 1
        elif prev[0] == idx and spaced not in prev[2]:
            prev[2].append(spaced)

    # Derived O*NET names come after every alias the sources wrote, so they never take a key.
    for concept in concepts:
        idx = canon_index.get(concept.canonical)
        if idx is None or concept.priority != _SOURCE_PRIORITY["onet_tech"]:
            continue
        for alias, policy in _derived_aliases(concept.canonical, vocab):
            key = lookup_key(alias)
            if key and key not in blocked and len(key) >= 3:
                add(key, " ".join(phrase_tokens(alias)), idx, policy)
                stats["derived"] += 1
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
