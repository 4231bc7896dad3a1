"""The rule-based standardizer on job descriptions."""

from __future__ import annotations

import pytest

from cvmatch_ray.schemas import EducationLevel, JDProfile, Seniority
from cvmatch_ray.standardize import StandardizationError
from cvmatch_ray.standardize.rules import RuleStandardizer
from cvmatch_ray.standardize.rules.jd import min_years

JD = """Senior Data Engineer
Location: Berlin, Germany

About the role
You will build the data platform behind our pricing engine.

Responsibilities
- Design and run batch and streaming pipelines on Apache Spark and Kafka
- Own our dbt models and the Airflow scheduler
- Mentor two junior engineers

Requirements
- 5+ years of experience as a data engineer
- Strong Python and SQL; PostgreSQL in production
- Bachelor's degree in Computer Science or equivalent practical experience
- Experience with Kubernetes is a plus

Nice to have
- Go, Terraform
- Experience with Snowflake
- Python type hints everywhere
"""


@pytest.fixture(scope="module")
def jd() -> JDProfile:
    return RuleStandardizer().standardize_jd(JD)


def test_title_location_seniority(jd: JDProfile) -> None:
    assert jd.title == "Senior Data Engineer"
    assert jd.location == "Berlin, Germany"
    assert jd.seniority == Seniority.senior


def test_required_vs_preferred(jd: JDProfile) -> None:
    required, preferred = set(jd.required_skills), set(jd.preferred_skills)
    assert {"Python", "SQL", "PostgreSQL", "Apache Spark", "Apache Kafka", "dbt"} <= required
    assert {"Go (programming language)", "Terraform", "Snowflake (data platform)", "Kubernetes"} <= preferred
    # Python is also under "Nice to have": a skill found both ways is required.
    assert "Python" not in preferred
    assert not required & preferred


def test_years_education_duties(jd: JDProfile) -> None:
    assert jd.min_years == 5
    assert jd.education_level == EducationLevel.bachelor
    assert jd.responsibilities[0].startswith("Design and run batch and streaming pipelines")
    assert len(jd.responsibilities) == 3


def test_preferred_phrases_without_headings() -> None:
    text = ("Backend Developer\n"
            "We need solid Java and Spring Boot skills. Kotlin is a plus.\n"
            "Knowledge of Docker is desirable; AWS experience preferred.\n"
            "Must have: Git.\n")
    jd = RuleStandardizer().standardize_jd(text)
    assert {"Java", "Spring Boot", "Git"} <= set(jd.required_skills)
    assert {"Kotlin", "Docker", "Amazon Web Services"} <= set(jd.preferred_skills)


def test_google_style_qualification_headings() -> None:
    text = ("Financial Analyst\n"
            "Minimum qualifications:\n"
            "BA/BS degree or equivalent practical experience.\n"
            "4 years of experience with Excel and SQL.\n"
            "Preferred qualifications:\n"
            "MBA.\n"
            "Experience with Tableau.\n")
    jd = RuleStandardizer().standardize_jd(text)
    assert set(jd.required_skills) >= {"Microsoft Excel", "SQL"}
    assert jd.preferred_skills == ["Tableau"]
    assert jd.education_level == EducationLevel.bachelor  # the MBA is only preferred
    assert jd.min_years == 4


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("5+ years of Java", 5),
        ("at least 3 years in sales", 3),
        ("3-5 years of experience", 3),
        ("3 to 5 yrs experience", 3),
        ("minimum of two years of experience", 2),
        ("Experience must be 15 Years plus", 15),
        ("10 or more years", 10),
        ("Exp 8 - 10 Years", 8),
        ("a team of 40 people", None),
        ("founded 25 years ago", None),
    ],
)
def test_min_years(text: str, years: float | None) -> None:
    assert min_years(text) == years


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("Bachelor's degree in a related field or equivalent experience", EducationLevel.bachelor),
        ("Master's or PhD in Statistics", EducationLevel.master),
        ("High school diploma or GED required", EducationLevel.high_school),
        ("PhD in Machine Learning", EducationLevel.doctorate),
    ],
)
def test_education_level(text: str, level: EducationLevel) -> None:
    jd = RuleStandardizer().standardize_jd("Engineer\nRequirements\n" + text)
    assert jd.education_level == level


def test_empty_jd_is_an_error() -> None:
    with pytest.raises(StandardizationError):
        RuleStandardizer().standardize_jd("")


@pytest.mark.parametrize(
    ("first_line", "title"),
    [
        ("Job Description Associate Consultant - Node JS Architect", "Associate Consultant - Node JS Architect"),
        ("Manager, Data Science-2307001016W", "Manager, Data Science"),
        ("Position: Java Developer (REQ-123456)", "Java Developer"),
    ],
)
def test_title_is_tidied(first_line: str, title: str) -> None:
    jd = RuleStandardizer().standardize_jd(first_line + "\nWe use Python and SQL daily.")
    assert jd.title == title


def test_company_blurb_skills_are_not_requirements() -> None:
    text = ("Data Analyst\nRequirements\n- SQL and Tableau\n"
            "About us\nOur platform runs on Kubernetes and Scala.\n")
    jd = RuleStandardizer().standardize_jd(text)
    assert set(jd.required_skills) == {"SQL", "Tableau"}
