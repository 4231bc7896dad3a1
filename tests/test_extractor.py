"""The trained field extractor and its use in the rule-based standardizer."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cvmatch_ray.extract.core import extract_document
from cvmatch_ray.schemas import CVProfile
from cvmatch_ray.standardize.learned import load_extractor
from cvmatch_ray.standardize.learned.extractor import spans_from_tags
from cvmatch_ray.standardize.learned.features import tokenize
from cvmatch_ray.standardize.rules import RULES_VERSION, RuleStandardizer

TODAY = date(2024, 6, 15)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "cvs"

# Indeed layout: title line, "Company - City, ST", date line; two roles at one company.
INDEED = """Rahul Sharma
Java Developer - Infosys Limited
Email me on Indeed: rahul@example.com

WORK EXPERIENCE

Senior Software Engineer
Infosys Limited - Pune, Maharashtra -
June 2016 to Present

Developed REST services in Java and Spring Boot for a banking client.

Software Engineer
Infosys Limited - Pune, Maharashtra -
July 2013 to May 2016

Maintained Oracle PL/SQL procedures and wrote unit tests with JUnit.

EDUCATION

B.Tech in Computer Science
Pune University - Pune, Maharashtra
2013

SKILLS

Java, Spring Boot, Oracle, JUnit
"""


@pytest.fixture(scope="module")
def std() -> RuleStandardizer:
    return RuleStandardizer(today=TODAY)


def test_spans_from_tags_cuts_the_original_text() -> None:
    text = "Acme  Corp\nSenior Engineer"
    tokens, segments = tokenize(text)
    assert [t.text for t in tokens] == ["Acme", "Corp", "Senior", "Engineer"]
    assert len(segments) == 3  # a run of spaces is a soft break, the newline a hard one
    spans = spans_from_tags(text, tokens, ["B-COMPANY", "I-COMPANY", "B-TITLE", "I-TITLE"])
    assert [(s.label, s.text) for s in spans] == [("COMPANY", "Acme  Corp"), ("TITLE", "Senior Engineer")]
    # An I- tag after another label opens its own span.
    spans = spans_from_tags(text, tokens, ["B-COMPANY", "I-TITLE", "O", "B-TITLE"])
    assert [(s.label, s.text) for s in spans] == [("COMPANY", "Acme"), ("TITLE", "Corp"), ("TITLE", "Engineer")]


def test_extractor_labels_a_typical_layout() -> None:
    spans = load_extractor().spans(INDEED)
    by_label: dict[str, set[str]] = {}
    for s in spans:
        by_label.setdefault(s.label, set()).add(s.text)
    assert "Rahul Sharma" in by_label["NAME"]
    assert "Infosys Limited" in by_label["COMPANY"]
    assert {"Senior Software Engineer", "Software Engineer"} <= by_label["TITLE"]
    assert "June 2016 to Present" in by_label["DATE"]


def _roles(profile: CVProfile) -> list[tuple[str | None, str | None, str | None, str | None]]:
    return [(e.title, e.company, e.start, e.end) for e in profile.experience if e.start]


def test_indeed_layout_yields_each_role(std: RuleStandardizer) -> None:
    p = std.standardize_cv(INDEED)
    assert p.contact.name == "Rahul Sharma"
    assert _roles(p) == [
        ("Senior Software Engineer", "Infosys Limited", "2016-06", "2024-06"),
        ("Software Engineer", "Infosys Limited", "2013-07", "2016-05"),
    ]
    dated = [e for e in p.experience if e.start]
    assert dated[0].responsibilities == ["Developed REST services in Java and Spring Boot for a banking client."]
    assert all(not e.responsibilities for e in p.experience if not e.start)  # the headline owns no body
    # The rule-only parser reads this layout less well: the extractor is what finds the companies.
    rule_only = RuleStandardizer(today=TODAY, extractor=None).standardize_cv(INDEED)
    assert rule_only.experience and rule_only != p
    assert std.provenance.prompt_version != RULES_VERSION
    assert RuleStandardizer(extractor=None).provenance.prompt_version == RULES_VERSION


def test_flattened_text_keeps_name_and_titles(std: RuleStandardizer) -> None:
    # No line breaks at all: the extractor still finds the name and the role titles.
    flat = " ".join(INDEED.split())
    p = std.standardize_cv(flat)
    assert p.contact.name == "Rahul Sharma"
    assert "Software Engineer" in p.titles


def test_skill_keeps_its_mention(std: RuleStandardizer) -> None:
    p = std.standardize_cv(INDEED + "\nTools: k8s, Docker\n")
    by_name = {s.name: s for s in p.skills}
    assert "k8s" in by_name["Kubernetes"].mentions
    assert "Spring Boot" in {m for s in p.skills for m in s.mentions}


def test_example_pdf_parses_roles_and_certificates(std: RuleStandardizer) -> None:
    path = EXAMPLES / "amelie_dubois_backend.pdf"
    text = extract_document(path.read_bytes(), filename=path.name).text
    p = std.standardize_cv(text)
    assert [(e.title, e.company) for e in p.experience] == [
        ("Senior Backend Engineer", "Finch Payments"),
        ("Backend Developer", "Ardoise Logiciels"),
    ]
    assert [(e.start, e.end) for e in p.experience] == [("2019-01", "2024-06"), ("2017-03", "2018-12")]
    assert p.certifications == ["AWS Certified Developer - Associate (2021)"]
    first, second = p.experience
    assert first.responsibilities[0] == (
        "Lead a team of 5 building the payments API in Python (FastAPI) on PostgreSQL."
    )
    assert second.responsibilities[0].startswith("Built REST APIs in Django")
    assert {e.institution for e in p.education} == {"Université Claude Bernard Lyon 1"}
