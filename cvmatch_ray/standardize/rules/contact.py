"""Contact details from a CV: e-mail, phone, links, name, location and headline."""

from __future__ import annotations

import re

from cvmatch_ray.schemas import Contact, clean_line
from cvmatch_ray.standardize.rules.sections import match_heading, strip_bullet
from cvmatch_ray.taxonomy import Taxonomy

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# International and national forms: +44 20 7946 0958, (555) 123-4567, 0049-30-1234567, 555.123.4567.
_PHONE_RE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d ().-]{6,}\d(?:\s*(?:x|ext\.?)\s*\d{1,5})?(?![\w])")
_URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s,;|<>()\"']+|\b(?:[a-z]{2,3}\.)?(?:linkedin\.com|github\.com|gitlab\.com)/[^\s,;|<>()\"']+",
    re.IGNORECASE,
)
# "City, ST", "City, ST 12345", "City, Country": the usual header address tail.
_LOCATION_RE = re.compile(
    r"\b([A-Z][A-Za-z.'’-]+(?: [A-Z][A-Za-z.'’-]+){0,3}),\s*"
    r"([A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?|[A-Z][a-z]+(?: [A-Z][a-z]+)?)(?=\s*(?:$|[|•·,;]|\d{5}))"
)
_NAME_WORD = re.compile(r"^(?:[A-ZÀ-ÖØ-Þ][\w'’.-]*|[A-ZÀ-ÖØ-Þ]\.|(?:de|da|del|della|der|van|von|la|le|di|du|bin|al|el|dos|das|y)$)$")
_NOT_NAME_WORDS = frozenset(
    """resume résumé cv curriculum vitae profile page address phone mobile email e-mail contact street road
    avenue city state objective summary name linkedin github portfolio tel cell date birth nationality
    template sample personal information details of and the for in at to with seeker seeking career highlights
    student internship training applicant example your""".split()
)
_CREDENTIALS = re.compile(
    r",?\s*\b(?:M\.?\s?ED|MBA|PhD|Ph\.D|MD|M\.D|RN|CPA|PMP|MSc|BSc|MS|BS|MA|BA|Jr|Sr|II|III|PE|CFA|Esq)\b\.?\s*$",
    re.IGNORECASE,
)


# Role words that end fewer titles than the taxonomy's head words but never a name.
_ROLE_WORDS = frozenset("intern partner trainee transporter communicator support sales finance treasurer".split())


def _stem(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def find_email(text: str) -> str | None:
    """The first e-mail address that is not a masked placeholder (xxxx@xxxx.xxx)."""
    for m in EMAIL_RE.finditer(text):
        email = m.group().rstrip(".")
        if set(email.lower()) <= set("x@."):
            continue
        if len(email) <= 120:
            return email
    return None


def find_phone(text: str) -> str | None:
    """The first phone number: 9 to 15 digits, not a date or a year range."""
    for m in _PHONE_RE.finditer(text):
        raw = m.group().strip()
        digits = re.sub(r"\D", "", raw.split("x")[0].split("ext")[0])
        if not 9 <= len(digits) <= 15:
            continue
        if re.fullmatch(r"(?:19|20)\d\d\s*[-–]\s*(?:19|20)\d\d|(?:19|20)\d\d-[01]\d-[0-3]\d", raw):
            continue  # a year range or an ISO date, not a number
        phone = re.sub(r"[^0-9+()./ x-]", "", raw)
        return " ".join(phone.split())[:40]
    return None


def find_links(text: str) -> list[str]:
    """URLs, LinkedIn and GitHub profiles, in order, without duplicates (at most 10)."""
    out: list[str] = []
    for m in _URL_RE.finditer(text):
        url = m.group().rstrip(".")
        if set(url.lower()) <= set("x./:"):
            continue  # masked placeholder
        url = clean_line(url, 300)
        if url not in out:
            out.append(url)
        if len(out) == 10:
            break
    return out


def _strip_contact_bits(line: str) -> str:
    line = EMAIL_RE.sub(" ", line)
    line = _URL_RE.sub(" ", line)
    return " ".join(line.split())


def name_candidate(line: str, taxonomy: Taxonomy) -> str | None:
    """``line`` as a person's name, or None if it reads as anything else."""
    line = strip_bullet(line)
    line = re.sub(r"^(?:name|full name)\s*[:\-]\s*", "", line, flags=re.IGNORECASE)
    if "@" in line or re.search(r"\d", line) or len(line) > 60:
        # A name often shares its line with a phone or an e-mail: keep what comes first.
        first = re.split(r"\s*(?:[|•·,]|\s{2,}|\+?\(?\d)", _strip_contact_bits(line), maxsplit=1)[0]
        if first == line or not first:
            return None
        line = first
    line = _CREDENTIALS.sub("", line).strip(" ,;|-")
    if re.search(r",\s*(?:[A-Z]{2}\b|\d{5})", line):
        return None  # "San Mateo, CA": an address line
    line = line.split(",")[0].strip()
    line = re.sub(r"\s+X{3,}$", "", line)  # a masked surname
    words = line.split()
    if not 2 <= len(words) <= 5:
        return None
    if any(w.lower().strip(".,:") in _NOT_NAME_WORDS for w in words):
        return None
    if not all(_NAME_WORD.match(w) for w in words):
        return None
    if match_heading(line) is not None or taxonomy.looks_like_title(line):
        return None
    if line.isupper() and any(_stem(w.lower()) in taxonomy.title_head_words | _ROLE_WORDS for w in words):
        return None  # "SAFETY INTERN", "HR PARTNER": a shouted title, not a name
    if taxonomy.find_skills(line):
        return None  # "Microsoft Office", "Java Developer"
    return line


def find_name(header: list[str], taxonomy: Taxonomy) -> tuple[str | None, int | None]:
    """The name and its line index among the first header lines."""
    for i, line in enumerate(header[:8]):
        name = name_candidate(line, taxonomy)
        if name:
            if name.isupper():
                name = name.title()
            return clean_line(name, 120), i
    return None, None


def find_location(lines: list[str]) -> str | None:
    """A "City, ST" or "City, Country" from the header lines, if one is written there."""
    for line in lines[:10]:
        bare = _strip_contact_bits(line)
        for m in _LOCATION_RE.finditer(bare):
            city, region = m.group(1), m.group(2)
            if city.lower() in {"company name", "company"}:
                continue
            return clean_line(f"{city}, {region}", 120)
    return None


# Where a title's own words end and a qualifier begins: "Director | of Finance",
# "Manager | , Finance", "HR Manager | /Generalist", "Partner | ; Business Development".
_TITLE_QUALIFIER_RE = re.compile(r"\s+of\s+|\s*[,;/]\s*", re.IGNORECASE)


def _reads_as_title(text: str, taxonomy: Taxonomy) -> bool:
    """Whether a header line is a job title, including one followed by a qualifier.

    ``looks_like_title`` reads a title by its last word ("... Manager"); a title written
    head first ("Director of Finance", "Manager, Finance") or with a second role after a
    slash ("HR Manager/Generalist") ends in a department or another title, so its lead is
    checked too.
    """
    if taxonomy.looks_like_title(text):
        return True
    lead = _TITLE_QUALIFIER_RE.split(text, maxsplit=1)[0].strip()
    return bool(lead) and lead != text and taxonomy.looks_like_title(lead)


def find_headline(header: list[str], name_index: int | None, taxonomy: Taxonomy) -> str | None:
    """The title line under the name ("Senior Data Engineer"), or the first line if it is a title."""
    start = 0 if name_index is None else name_index + 1
    candidates = header[start:start + 4] if name_index is not None else header[:3]
    for line in candidates:
        bare = strip_bullet(_strip_contact_bits(line))
        if not bare or "@" in bare or match_heading(bare) is not None:
            continue
        head = re.split(r"\s+[-–—|]\s+|\s+at\s+|\s*[|•·]\s*", bare, maxsplit=1)[0].strip(" -,:")
        if head and len(head) <= 80 and not re.search(r"\d{3}", head) and _reads_as_title(head, taxonomy):
            return clean_line(head.title() if head.isupper() else head, 120)
    return None


def extract_contact(header: list[str], full_text: str, taxonomy: Taxonomy) -> tuple[Contact, int | None]:
    """Contact details; e-mail, phone and links are searched in the whole text.

    Returns:
        The contact and the header index of the name line (None if no name was found).
    """
    name, name_idx = find_name(header, taxonomy)
    top = "\n".join(header[:15]) if header else full_text[:1500]
    email = find_email(top) or find_email(full_text)
    phone = find_phone(top) or find_phone(full_text)
    contact = Contact(
        name=name,
        email=email,
        phone=phone or None,
        location=find_location(header),
        links=find_links(full_text),
    )
    return contact, name_idx
