"""The shipped taxonomy: aliases, blocked short forms and their context rules, titles."""

from __future__ import annotations

import gzip
import json

import pytest

from cvmatch_ray.schemas import Section
from cvmatch_ray.taxonomy import Taxonomy, TaxonomyError, load_taxonomy
from cvmatch_ray.taxonomy.normalize import lookup_key, tokenize


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return load_taxonomy()


def names(tax: Taxonomy, text: str, section: Section | None = None) -> list[str]:
    return [h.canonical for h in tax.find_skills(text, section=section)]


# ------------------------------------------------------------------------ normalisation


def test_keys_keep_language_punctuation_apart() -> None:
    assert lookup_key("C++") == "c++"
    assert lookup_key("C#") == "c#"
    assert lookup_key("C") == "c"
    assert lookup_key("Node.js") == lookup_key("node js") == lookup_key("NodeJS") == "nodejs"
    assert lookup_key("CI/CD") == "cicd"
    assert lookup_key(".NET") == "dotnet"
    assert lookup_key("ASP.NET") == "aspnet"  # a .net glued to a word is not the dotnet token
    assert lookup_key("Amélie") == "amelie"


def test_tokens_carry_offsets() -> None:
    text = "Used .NET, C++ and k8s"
    for start, end, key in tokenize(text):
        assert lookup_key(text[start:end]) == key


# ------------------------------------------------------------------------ aliases


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("k8s", "Kubernetes"),
        ("js", "JavaScript"),
        ("postgres", "PostgreSQL"),
        (".NET", ".NET"),
        ("dotnet", ".NET"),
        ("golang", "Go (programming language)"),
        ("sklearn", "scikit-learn"),
        ("MS Excel", "Microsoft Excel"),
        ("J2EE", "Java EE"),
    ],
)
def test_aliases_resolve(tax: Taxonomy, alias: str, canonical: str) -> None:
    assert tax.canonical(alias) == canonical
    assert tax.is_known(alias)


def test_category_and_unknown(tax: Taxonomy) -> None:
    assert tax.category("Python") == "Programming language"
    assert tax.category("not a skill at all") is None
    assert tax.canonical("qwertyuiop zxcv") is None
    assert not tax.is_known("qwertyuiop zxcv")


def test_blocked_forms_have_no_canonical_unless_asked(tax: Taxonomy) -> None:
    assert tax.canonical("go") is None
    assert tax.canonical("R") is None
    assert tax.canonical("Go", allow_blocked=True) == "Go (programming language)"


def test_find_skills_aliases_in_text(tax: Taxonomy) -> None:
    found = names(tax, "Deployed services on k8s with postgres, a js front end and .NET Core workers.")
    assert {"Kubernetes", "PostgreSQL", "JavaScript", ".NET Core"} <= set(found)


def test_longest_match_wins(tax: Taxonomy) -> None:
    hits = tax.find_skills("We run Apache Spark jobs and Microsoft SQL Server.")
    assert [h.canonical for h in hits] == ["Apache Spark", "Microsoft SQL Server"]
    assert hits[1].surface == "Microsoft SQL Server"


def test_offsets_point_at_surface(tax: Taxonomy) -> None:
    text = "Stack: Python, Kubernetes (k8s), CI/CD"
    for h in tax.find_skills(text):
        assert text[h.start:h.end] == h.surface


# ------------------------------------------------------------------------ blocked short forms


def test_blocked_forms_in_prose_are_ignored(tax: Taxonomy) -> None:
    prose = "I go to the office. We report to the C-level and R&D teams; grade C in maths."
    assert names(tax, prose) == []


def test_blocked_forms_in_a_list_next_to_languages(tax: Taxonomy) -> None:
    found = names(tax, "Languages: Python, Go, R, C and Java")
    assert found == ["Python", "Go (programming language)", "R (programming language)",
                     "C (programming language)", "Java"]


def test_blocked_forms_in_skills_section(tax: Taxonomy) -> None:
    found = names(tax, "Go\nR\nDocker", section=Section.skills)
    assert found == ["Go (programming language)", "R (programming language)", "Docker"]


def test_c_plus_plus_and_c_sharp_are_not_c(tax: Taxonomy) -> None:
    assert names(tax, "Experienced in C++ and C# development") == ["C++", "C#"]
    assert "C (programming language)" in names(tax, "Java, C, C++")


def test_c_level_and_rnd_never_match_even_in_skills(tax: Taxonomy) -> None:
    found = names(tax, "C-level stakeholder management, R&D budgets", section=Section.skills)
    assert "C (programming language)" not in found
    assert "R (programming language)" not in found


def test_lowercase_go_is_not_the_language(tax: Taxonomy) -> None:
    assert "Go (programming language)" not in names(tax, "Python, go, Java")


def test_word_and_oracle_need_a_list(tax: Taxonomy) -> None:
    assert names(tax, "He chose every Word carefully.") == []
    assert "Microsoft Word" in names(tax, "Word, Excel, PowerPoint")
    assert "Oracle Database" not in names(tax, "Worked at Oracle for five years.")
    assert "Oracle Database" in names(tax, "Databases: Oracle, MySQL, PostgreSQL")


def test_cased_alias_needs_capital_or_context(tax: Taxonomy) -> None:
    assert "Microsoft Excel" not in names(tax, "I excel at teamwork.")
    assert "Microsoft Excel" in names(tax, "Built models in Excel.")


def test_find_all_aliases_is_the_naive_baseline(tax: Taxonomy) -> None:
    text = "I go to the office"
    assert names(tax, text) == []
    assert "Go (programming language)" in [h.canonical for h in tax.find_all_aliases(text)]


# ------------------------------------------------------------------------ titles


@pytest.mark.parametrize(
    ("title", "canonical"),
    [
        ("Senior Software Engineer", "software developer"),
        ("Sr. Software Engineer II", "software developer"),
        ("Junior Java Developer", "software developer"),
        ("Staff Accountant", "accountant"),
        ("Data Scientist - Google", "data scientist"),
        ("SRE", "site reliability engineer"),
    ],
)
def test_normalize_title(tax: Taxonomy, title: str, canonical: str) -> None:
    assert tax.normalize_title(title) == canonical


def test_normalize_title_unknown(tax: Taxonomy) -> None:
    assert tax.normalize_title("Hank Halvorson") is None
    assert tax.normalize_title("") is None


def test_looks_like_title(tax: Taxonomy) -> None:
    assert tax.looks_like_title("Regional Sales Manager")
    assert not tax.looks_like_title("Amélie Dubois-Lefèvre")


# ------------------------------------------------------------------------ loading


def test_load_is_cached() -> None:
    # How long a load takes is measured, not asserted: benchmarks/bench_parse_accuracy.py
    # prints it ("taxonomy load ... ms").
    load_taxonomy.cache_clear()
    first = load_taxonomy()
    assert load_taxonomy() is first
    assert len(first) > 10_000


def test_wrong_data_version_is_refused() -> None:
    with pytest.raises(TaxonomyError, match="rebuild"):
        Taxonomy({"version": 999}, {"version": 1})


def test_build_round_trip(tmp_path) -> None:
    """The builder turns a tiny source folder into files the lookup reads."""
    from cvmatch_ray.taxonomy.build import build

    src = tmp_path / "src"
    src.mkdir()
    (src / "skills_taxonomy.csv").write_text(
        "canonical,aliases,category,source,source_id\n"
        "Kubernetes,k8s|kube,Technology & tools > DevOps,curated,c:k8s\n"
        "Anvils,,Tools & equipment > Anvils,onet_tools,t:1\n"
        "accounting,bookkeeping work,ESCO > knowledge > business,esco,e:1\n"
        "Go (programming language),golang,Technology & tools > Programming language,curated,c:go\n",
        encoding="utf-8",
    )
    (src / "ambiguous_aliases.csv").write_text(
        "alias,kept_for,other_candidates,reason\n"
        "go,,Go (programming language),blocked (not an alias anywhere): common verb\n",
        encoding="utf-8",
    )
    (src / "job_titles.csv").write_text(
        "canonical_title,aliases,occupation_code,source,source_id,group\n"
        "data scientist,data science specialist,1,esco_v1.2.0,x,g\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    sizes = build(src, out)
    assert set(sizes) == {"skills.json.gz", "titles.json.gz"}
    skills = json.loads(gzip.decompress((out / "skills.json.gz").read_bytes()))
    titles = json.loads(gzip.decompress((out / "titles.json.gz").read_bytes()))
    small = Taxonomy(skills, titles)
    assert "Anvils" not in skills["concepts"]  # physical tools are dropped
    assert small.canonical("k8s") == "Kubernetes"
    assert [h.canonical for h in small.find_skills("Python, Go, Kubernetes")] == [
        "Go (programming language)", "Kubernetes"]
    assert small.find_skills("let us go") == []
    assert small.normalize_title("Senior Data Scientist") == "data scientist"
