"""The rule-based standardizer on whole CVs, and its parts: sections, contact, experience, education."""

from __future__ import annotations

from datetime import date

import pytest

from cvmatch_ray.config import Settings
from cvmatch_ray.schemas import CVProfile, EducationLevel, LanguageLevel, Section, Seniority
from cvmatch_ray.standardize import StandardizationError, make_standardizer, standardize_cvs
from cvmatch_ray.standardize.rules import RuleStandardizer
from cvmatch_ray.standardize.rules.contact import find_email, find_links, find_phone
from cvmatch_ray.standardize.rules.education import parse_education, parse_languages
from cvmatch_ray.standardize.rules.sections import match_heading, prepare_lines, split_sections

TODAY = date(2024, 6, 15)

CV = """Amélie Dubois-Lefèvre
Senior Backend Engineer
Lyon, France | amelie.dubois@example.org | +33 6 12 34 56 78
linkedin.com/in/amelie-dubois | https://github.com/amelied

Summary
Backend engineer with 8 years of experience building data-heavy services in Python and Go.

Technical Skills:
Python, Go, R, PostgreSQL, k8s, Docker, CI/CD, AWS

Work Experience
Senior Backend Engineer | Datalyse SAS | Jan 2019 – Present
• Designed event pipelines on Kafka and PostgreSQL serving 2M users
• Moved the platform to Kubernetes, cutting deploy time by 80%

Software Engineer at Webcorp Ltd
03/2015 to 06/2018
- Built REST APIs in Django and maintained the React front end
- Reported to the C-level on R&D priorities

Education
Master of Science in Computer Science, Université Claude Bernard Lyon 1, 2014
B.Sc. in Mathematics - University of Grenoble (2012)

Certifications
AWS Certified Solutions Architect – Associate

Languages
French (native), English (fluent), German - basic
"""


@pytest.fixture(scope="module")
def rules() -> RuleStandardizer:
    # The rule-only parser: these tests pin the rules; tests/test_extractor.py covers the
    # parser combined with the trained extractor.
    return RuleStandardizer(today=TODAY, extractor=None)


@pytest.fixture(scope="module")
def profile(rules: RuleStandardizer) -> CVProfile:
    return rules.standardize_cv(CV)


# ------------------------------------------------------------------------ whole CV


def test_contact(profile: CVProfile) -> None:
    c = profile.contact
    assert c.name == "Amélie Dubois-Lefèvre"
    assert c.email == "amelie.dubois@example.org"
    assert c.phone == "+33 6 12 34 56 78"
    assert c.location == "Lyon, France"
    assert "linkedin.com/in/amelie-dubois" in c.links
    assert "https://github.com/amelied" in c.links


def test_headline_and_summary(profile: CVProfile) -> None:
    assert profile.headline == "Senior Backend Engineer"
    assert profile.summary.startswith("Backend engineer with 8 years")


def test_skills_with_sections(profile: CVProfile) -> None:
    by_name = {s.name: s for s in profile.skills}
    for name in ("Python", "Go (programming language)", "R (programming language)", "PostgreSQL",
                 "Kubernetes", "Docker", "CI/CD", "Amazon Web Services", "Apache Kafka", "Django"):
        assert name in by_name, name
    assert Section.skills in by_name["Kubernetes"].sections
    assert Section.experience in by_name["Kubernetes"].sections
    assert "k8s" in by_name["Kubernetes"].mentions
    # "C-level" and "R&D" in the experience section are not the C and R languages.
    assert Section.experience not in by_name["R (programming language)"].sections
    assert "C (programming language)" not in by_name


def test_experience_entries(profile: CVProfile) -> None:
    first, second = profile.experience
    assert (first.title, first.company) == ("Senior Backend Engineer", "Datalyse SAS")
    assert (first.start, first.end, first.current, first.months) == ("2019-01", "2024-06", True, 66)
    assert len(first.responsibilities) == 2
    assert first.responsibilities[0].startswith("Designed event pipelines")
    assert "Apache Kafka" in first.skills
    assert (second.title, second.company) == ("Software Engineer", "Webcorp Ltd")
    assert (second.start, second.end, second.current, second.months) == ("2015-03", "2018-06", False, 40)
    assert profile.total_experience_months == 66 + 40


def test_education_certifications_languages(profile: CVProfile) -> None:
    master, bachelor = profile.education
    assert master.level == EducationLevel.master
    assert master.field == "Computer Science"
    assert master.institution == "Université Claude Bernard Lyon 1"
    assert master.year == 2014
    assert bachelor.level == EducationLevel.bachelor
    assert bachelor.institution == "University of Grenoble"
    assert bachelor.year == 2012
    assert profile.highest_education == EducationLevel.master
    assert profile.certifications == ["AWS Certified Solutions Architect – Associate"]
    langs = {lang.name: lang.level for lang in profile.languages}
    assert langs == {"French": LanguageLevel.native, "English": LanguageLevel.fluent,
                     "German": LanguageLevel.basic}


def test_seniority(profile: CVProfile) -> None:
    assert profile.seniority == Seniority.senior


# ------------------------------------------------------------------------ layouts


LIVECAREER = """SENIOR ACCOUNTANT
Summary
Capable Accountant with seven years of experience.
Experience
Senior Accountant
 
September 2014
 
to 
Current
 
Company Name
 
ï¼\u200b 
City
 
, 
State
Prepared financial statements for different projects on monthly basis
Reconciled sub-ledger to general ledger account balances
Staff Accountant
 
09/2010
 
to 
03/2013
 
Company Name
 
ï¼\u200b 
City
 
, 
State
Maintained full accounting records for clients.
Education and Training
Bachelor of Science
 
: 
Accounting
 
, 
2010
Skills
QuickBooks, Excel, accounts payable, GAAP
"""


def test_livecareer_fragment_layout(rules: RuleStandardizer) -> None:
    p = rules.standardize_cv(LIVECAREER)
    assert p.contact.name is None  # the first line is a title, not a name
    assert p.headline == "Senior Accountant"
    assert [(e.title, e.company, e.location) for e in p.experience] == [
        ("Senior Accountant", "Company Name", "City , State"),
        ("Staff Accountant", "Company Name", "City , State"),
    ]
    assert p.experience[0].start == "2014-09" and p.experience[0].current
    assert p.experience[1].months == 31
    assert p.education[0].level == EducationLevel.bachelor
    assert p.education[0].field == "Accounting"
    assert p.education[0].year == 2010
    assert {"QuickBooks", "Microsoft Excel", "Accounts payable", "GAAP"} <= set(p.skill_names)


INDEED = """John Smith
Software Development Director - Oracle Inc

WORK EXPERIENCE

Software Development Director

Oracle Inc -  Redwood City, CA -

April 2015 to Present

Led a team of 40 engineers.

Senior Software Developer

R-Systems -  Sacramento, CA -

January 2010 to March 2015

Built billing software in Java.

EDUCATION

M.S. in Computer Engineering

Texas A&M University -  Kingsville, TX

1994
"""


def test_indeed_layout(rules: RuleStandardizer) -> None:
    p = rules.standardize_cv(INDEED)
    assert p.contact.name == "John Smith"
    assert p.headline == "Software Development Director"
    assert [(e.title, e.company, e.location) for e in p.experience] == [
        ("Software Development Director", "Oracle Inc", "Redwood City, CA"),
        ("Senior Software Developer", "R-Systems", "Sacramento, CA"),
    ]
    assert p.experience[0].responsibilities == ["Led a team of 40 engineers."]
    assert p.education[0].degree == "M.S. in Computer Engineering"
    assert p.education[0].institution == "Texas A&M University"
    assert p.seniority == Seniority.executive


def test_title_at_company_and_date_first_lines(rules: RuleStandardizer) -> None:
    text = (
        "Experience\n"
        "June 2011 to Current Senior Accountant\n"
        "Acme Corp | Dallas, TX\n"
        "Closed the books monthly.\n"
        "2005 - 2011: Accountant, Sony Music\n"
        "Prepared tax returns.\n"
    )
    p = rules.standardize_cv(text)
    assert [(e.title, e.company) for e in p.experience] == [
        ("Senior Accountant", "Acme Corp"),
        ("Accountant", "Sony Music"),
    ]
    assert p.experience[0].location == "Dallas, TX"


def test_scraped_blob_is_split_into_lines(rules: RuleStandardizer) -> None:
    blob = ("Jane Roe  123 Main Street, Springfield, IL  jane.roe@example.com    PROFESSIONAL EXPERIENCE  "
            "Data Analyst  Initech Inc  2016  2020  Built SQL dashboards in Tableau for the sales team and "
            "automated weekly reports with Python scripts that pulled data from the warehouse.    EDUCATION  "
            "Bachelor of Science in Statistics, University of Illinois, 2015    SKILLS  SQL, Tableau, Python, R")
    p = rules.standardize_cv(blob)
    assert p.contact.name == "Jane Roe"
    assert p.contact.email == "jane.roe@example.com"
    (entry,) = p.experience
    assert (entry.title, entry.company, entry.start, entry.end) == ("Data Analyst", "Initech Inc", "2016-01", "2020-01")
    assert p.education[0].institution == "University of Illinois"
    assert "R (programming language)" in p.skill_names


def test_long_multiline_input_always_validates(rules: RuleStandardizer) -> None:
    long_line = "Responsible for " + "very " * 800 + "many things"
    text = "Experience\nEngineer | Acme Inc | 2019 - 2020\n" + long_line + "\n" + "x" * 5000
    p = rules.standardize_cv(text)
    assert all(len(r) <= 2000 for e in p.experience for r in e.responsibilities)
    CVProfile.model_validate(p.model_dump())


def test_empty_text_is_an_error(rules: RuleStandardizer) -> None:
    with pytest.raises(StandardizationError):
        rules.standardize_cv("  \n ")


# ------------------------------------------------------------------------ parts


@pytest.mark.parametrize(
    ("line", "section", "rest"),
    [
        ("Technical Skills:", Section.skills, ""),
        ("Skills: Python, SQL", Section.skills, "Python, SQL"),
        ("PROFESSIONAL WORK EXPERIENCE", Section.experience, ""),
        ("Employment History", Section.experience, ""),
        ("Career Experience/Job History", Section.experience, ""),
        ("EDUCATION & CREDENTIALS", Section.education, ""),
        ("Certifications/Licenses", Section.certifications, ""),
        ("Objective", Section.summary, ""),
        ("Languages", Section.languages, ""),
        ("Academic Projects", Section.projects, ""),
    ],
)
def test_headings(line: str, section: Section, rest: str) -> None:
    assert match_heading(line) == (section, rest)


@pytest.mark.parametrize(
    "line", ["Project Accountant", "PROJECT MANAGER", "Experience in GAAP accounting and closing.",
             "Responsible for: reports"],
)
def test_not_headings(line: str) -> None:
    assert match_heading(line) is None


def test_split_sections_keeps_header() -> None:
    blocks = split_sections(prepare_lines("Jane Roe\nSummary\nHello\nSkills\nPython"))
    assert [(s, lines) for s, _, lines in blocks] == [
        (Section.header, ["Jane Roe"]), (Section.summary, ["Hello"]), (Section.skills, ["Python"])]


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("Call +44 20 7946 0958 now", "+44 20 7946 0958"),
        ("(555) 123-4567", "(555) 123-4567"),
        ("Tel: 0049-30-1234567", "0049-30-1234567"),
        ("Phone 555.123.4567 x204", "555.123.4567 x204"),
        ("2015 - 2019 at Acme", None),
    ],
)
def test_phone_forms(text: str, phone: str | None) -> None:
    assert find_phone(text) == phone


def test_email_skips_masked_placeholders_and_links_dedupe() -> None:
    assert find_email("xxxx@xxxx.xxx or real.person@mail.co.uk") == "real.person@mail.co.uk"
    assert find_links("see https://a.dev/x and https://a.dev/x, github.com/me") == ["https://a.dev/x", "github.com/me"]


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("High School Diploma, Lincoln High School, 2008", EducationLevel.high_school),
        ("Diploma in Mechanical Engineering, Govt Polytechnic", EducationLevel.vocational),
        ("Associate of Applied Science, Austin Community College", EducationLevel.associate),
        ("B.E. in Electronics, Anna University", EducationLevel.bachelor),
        ("B.Tech (Computer Science), IIT Delhi", EducationLevel.bachelor),
        ("BBA, University of Texas", EducationLevel.bachelor),
        ("BA in History, Yale University", EducationLevel.bachelor),
        ("MBA, Harvard Business School", EducationLevel.master),
        ("M.Tech in VLSI, NIT Trichy", EducationLevel.master),
        ("MSc Data Science, University of Edinburgh", EducationLevel.master),
        ("Ph.D. in Physics, MIT", EducationLevel.doctorate),
    ],
)
def test_education_levels(line: str, level: EducationLevel) -> None:
    (entry,) = parse_education([line])
    assert entry.level == level


def test_education_ignores_office_and_be_in_prose() -> None:
    assert parse_education(["Proficient in MS Office", "Eager to be useful"]) == []


def test_languages_with_levels() -> None:
    langs = parse_languages("Spanish: C1\nHindi - mother tongue\nJapanese (conversational)")
    assert [(x.name, x.level) for x in langs] == [
        ("Spanish", LanguageLevel.fluent), ("Hindi", LanguageLevel.native), ("Japanese", LanguageLevel.intermediate)]


# ------------------------------------------------------------------------ interface


def test_factory_and_provenance() -> None:
    st = make_standardizer(Settings(standardizer="rules"))
    assert st.name == "rules"
    assert (st.provenance.backend, st.provenance.prompt_version) == ("rules", "rules-1+crf-1")
    rules_only = make_standardizer(Settings(standardizer="rules", field_extractor="none"))
    assert rules_only.extractor is None and rules_only.provenance.prompt_version == "rules-1"


@pytest.mark.parametrize(("backend", "setting"), [("vllm", "CVMATCH_LLM__MODEL"), ("openai", "CVMATCH_LLM__OPENAI_BASE_URL")])
def test_factory_names_what_an_unconfigured_llm_backend_needs(backend: str, setting: str) -> None:
    from cvmatch_ray.standardize.llm import LLMBackendError

    with pytest.raises(LLMBackendError, match=setting):
        make_standardizer(Settings(standardizer=backend))


def test_batch_helper_keeps_going_past_errors(rules: RuleStandardizer) -> None:
    out = standardize_cvs(rules, [CV, "", INDEED])
    assert isinstance(out[0], CVProfile) and isinstance(out[2], CVProfile)
    assert isinstance(out[1], StandardizationError)


def test_inline_dates_and_wrapped_bullets(rules: RuleStandardizer) -> None:
    text = (
        "JANE DOE\nBACKEND ENGINEER\njane@example.com , Austin, TX\n"
        "EXPERIENCE\n"
        "Backend Engineer Mar 2021 - Present\n"
        "Plaid San Francisco, CA\n"
        "• Built the ledger service in Go and PostgreSQL, reducing reconciliation time\n"
        "across all payment rails\n"
        "Software Engineer Jun 2018 - Feb 2021\n"
        "Asana New York, NY\n"
        "• Shipped search in Python\n"
        "EDUCATION\n"
        "UT Austin 2018\n"
        "Bachelor of Science, Computer Science\n"
    )
    p = rules.standardize_cv(text)
    assert p.contact.name == "Jane Doe"
    assert [(e.title, e.company, e.location) for e in p.experience] == [
        ("Backend Engineer", "Plaid", "San Francisco, CA"),
        ("Software Engineer", "Asana", "New York, NY"),
    ]
    assert p.experience[0].responsibilities == [
        "Built the ledger service in Go and PostgreSQL, reducing reconciliation time across all payment rails"]
    (edu,) = p.education
    assert (edu.institution, edu.year, edu.field) == ("UT Austin", 2018, "Computer Science")


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("Amélie Dubois-Lefèvre", "Amélie Dubois-Lefèvre"),
        ("Trina Mosciski, M.ED.", "Trina Mosciski"),
        ("Name: Peter S. Gutierrez", "Peter S. Gutierrez"),
        ("Jane Roe | jane@x.org | +1 555 123 4567", "Jane Roe"),
        ("San Mateo, CA", None),
        ("JOB SEEKER", None),
        ("SAFETY INTERN", None),
        ("Senior Accountant", None),
        ("Curriculum Vitae", None),
        ("Microsoft Office Specialist", None),
    ],
)
def test_name_candidates(line: str, name: str | None) -> None:
    from cvmatch_ray.standardize.rules.contact import name_candidate
    from cvmatch_ray.taxonomy import load_taxonomy

    assert name_candidate(line, load_taxonomy()) == name


@pytest.mark.parametrize(
    ("first_line", "headline"),
    [
        ("SENIOR ACCOUNTANT", "Senior Accountant"),
        # Head first, a department or a second role after it: the lead is the title.
        ("DIRECTOR OF BUSINESS DEVELOPMENT", "Director Of Business Development"),
        ("MANAGER, FINANCE", "Manager, Finance"),
        ("HR MANAGER/GENERALIST", "Hr Manager/Generalist"),
        ("Software Engineer, Payments", "Software Engineer, Payments"),
        # Not titles, lead or not.
        ("Boston, MA", None),
        ("BANKING", None),
        ("Summary of Qualifications", None),
    ],
)
def test_headline_forms(first_line: str, headline: str | None) -> None:
    from cvmatch_ray.standardize.rules.contact import find_headline
    from cvmatch_ray.taxonomy import load_taxonomy

    assert find_headline([first_line], None, load_taxonomy()) == headline


def test_labelled_entry_fields(rules: RuleStandardizer) -> None:
    text = ("Experience\nClient: Cisco Systems\nRole: Functional Consultant\nDuration: Jan 2016 - Mar 2018\n"
            "Team size: 15\nConfigured SAP modules.\n")
    (entry,) = rules.standardize_cv(text).experience
    assert (entry.title, entry.company, entry.months) == ("Functional Consultant", "Cisco Systems", 27)
