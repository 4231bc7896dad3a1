"""The encoder (real bundled all-MiniLM-L6-v2) and the section texts it reads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cvmatch_ray.embed import (
    BUNDLED_MODEL_NAME,
    MAX_SECTION_WORDS,
    HEADLINE_WEIGHT,
    MAX_TITLE_WORDS,
    MIN_ROLE_MONTHS,
    SECTIONS,
    Embedder,
    EmptyDocumentError,
    cv_section_texts,
    default_model_path,
    jd_section_texts,
    length_buckets,
)
from cvmatch_ray.ids import document_id
from cvmatch_ray.match.features import cv_feature_columns
from cvmatch_ray.schemas import CVProfile, CVStats, ExperienceEntry, JDProfile, Provenance, SkillMention
from cvmatch_ray.storage.records import CVRecord
from cvmatch_ray.storage.tables import Store


def _cv_profile() -> CVProfile:
    return CVProfile(
        headline="Senior Data Engineer",
        summary="Data engineer with eight years of building batch and streaming pipelines.",
        skills=[SkillMention(name="Python"), SkillMention(name="Apache Spark"), SkillMention(name="SQL")],
        experience=[
            ExperienceEntry(
                title="Data Engineer",
                company="Acme",
                responsibilities=["Built Spark pipelines processing 2 TB a day.", "Owned the Airflow deployment."],
            ),
            ExperienceEntry(title="Analyst", responsibilities=["Wrote SQL reports for finance."]),
        ],
        total_experience_months=96,
    )


# ------------------------------------------------------------------------- encoder


def test_bundled_model_is_default(embedder: Embedder) -> None:
    assert os.path.isdir(default_model_path())
    assert embedder.model_name == BUNDLED_MODEL_NAME
    assert embedder.dim == 384
    # MiniLM's config allows 256 word pieces; we read 128, what it was trained on.
    assert embedder.max_seq_length == 128
    assert Embedder(max_tokens=None).max_seq_length == 256


def test_encode_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    texts = ["Python developer", "nurse in an intensive care unit", "x" * 5000]
    vectors = embedder.encode(texts)
    assert vectors.shape == (3, embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_empty_input(embedder: Embedder) -> None:
    vectors = embedder.encode([])
    assert vectors.shape == (0, embedder.dim)
    assert vectors.dtype == np.float32


def test_encode_rejects_a_bare_string(embedder: Embedder) -> None:
    with pytest.raises(TypeError):
        embedder.encode("Python developer")  # type: ignore[arg-type]


def test_encode_is_deterministic_and_batch_independent(embedder: Embedder) -> None:
    texts = ["Kubernetes platform engineer", "pastry chef", "accountant preparing tax returns"]
    first = embedder.encode(texts)
    np.testing.assert_array_equal(first, embedder.encode(texts))
    # The vector of a text must not depend on what else is in its batch (padding).
    alone = embedder.encode([texts[1]])
    np.testing.assert_allclose(alone[0], first[1], atol=1e-5)


def test_texts_are_encoded_in_groups_of_similar_length() -> None:
    lengths = [128, 6, 128, 100, 7, 40, 6, 96]
    buckets = length_buckets(lengths, token_budget=4 * 128)
    # Longest first; no group pads a text to more than 4/3 of its length; each index once.
    assert buckets == [[0, 2, 3, 7], [5], [4, 1, 6]]
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    # The budget caps the padded size of a pass: three 128-piece texts fit 3 * 128, not four.
    assert length_buckets([128] * 4, token_budget=3 * 128) == [[0, 1, 2], [3]]
    assert length_buckets([], token_budget=10) == []
    with pytest.raises(ValueError):
        length_buckets([1], token_budget=0)


def test_threads_encode_groups_side_by_side_with_the_same_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of texts run on the encoder's threads at once, each on one core; the vectors
    are what one thread gives, and callers on several threads get theirs unmixed (the
    tokenizer takes turns)."""
    texts = [" ".join(["Built and ran data pipelines for the finance team."] * (1 + i % 9)) + f" role {i}"
             for i in range(40)]
    one = Embedder(threads=1).encode(texts)
    two = Embedder(threads=2)
    threads: set[str] = set()
    encode_group = two._encode_group

    def recorded(group: list[str]) -> np.ndarray:
        threads.add(threading.current_thread().name)
        return encode_group(group)

    monkeypatch.setattr(two, "_encode_group", recorded)
    np.testing.assert_allclose(two.encode(texts), one, atol=1e-5)
    assert len(threads) == 2 and all(name.startswith("cvmatch-encode") for name in threads)
    with ThreadPoolExecutor(4) as callers:
        outs = list(callers.map(lambda i: two.encode(texts[i:] + texts[:i]), range(8)))
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, np.roll(one, -i, axis=0), atol=1e-5)


def test_a_long_text_in_the_batch_does_not_change_a_short_ones_vector(embedder: Embedder) -> None:
    long = " ".join(["Designed and ran data pipelines for the finance team."] * 30)
    short = "pastry chef"
    mixed = embedder.encode([long, short, "accountant"])
    np.testing.assert_allclose(mixed[1], embedder.encode([short])[0], atol=1e-5)
    np.testing.assert_allclose(mixed[0], embedder.encode([long])[0], atol=1e-5)


def test_similar_texts_are_closer_than_unrelated(embedder: Embedder) -> None:
    a, b, c = embedder.encode(
        [
            "Backend developer building REST APIs in Python and Django",
            "Software engineer writing Python web services with Django",
            "Registered nurse caring for patients in an intensive care unit",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.2
    assert float(a @ b) > float(b @ c) + 0.2


def test_rejects_bad_batch_size_and_threads() -> None:
    with pytest.raises(ValueError):
        Embedder(batch_size=0)
    with pytest.raises(ValueError):
        Embedder(threads=0)


def test_embed_sections_is_one_encode_call(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [
        cv_section_texts(_cv_profile(), "raw text"),
        jd_section_texts(JDProfile(title="Data Engineer", required_skills=["Python"]), "Data Engineer wanted."),
    ]
    calls: list[int] = []
    real_encode = embedder.encode

    def counting_encode(texts):
        calls.append(len(texts))
        return real_encode(texts)

    monkeypatch.setattr(embedder, "encode", counting_encode)
    vectors = embedder.embed_sections(docs)
    # The CV's title is three texts (headline and two roles), every other section one.
    assert calls == [8]
    assert vectors.shape == (2, len(SECTIONS), embedder.dim)
    assert vectors.dtype == np.float32
    # Section i of document j is the encoding of that very text.
    expected = real_encode([docs[1]["skills"]])[0]
    np.testing.assert_allclose(vectors[1, SECTIONS.index("skills")], expected, atol=1e-5)


def test_weighted_section_is_the_normalized_weighted_mean(embedder: Embedder) -> None:
    texts = ["Accountant", "Backend Developer"]
    a, b = embedder.encode(texts)
    vectors = embedder.embed_sections([{"title": ((texts[0], 3.0), (texts[1], 1.0)), "skills": "x", "experience": "y"}])
    expected = (3 * a + b) / np.linalg.norm(3 * a + b)
    title = vectors[0, SECTIONS.index("title")]
    np.testing.assert_allclose(title, expected, atol=1e-5)
    assert float(title @ a) > float(title @ b)


def test_cv_title_weights_follow_the_months_in_each_role() -> None:
    profile = CVProfile(
        headline="Accountant",
        experience=[
            ExperienceEntry(title="Senior Accountant", months=90),
            ExperienceEntry(title="Barista", months=3),  # counts as MIN_ROLE_MONTHS
            ExperienceEntry(title="Senior Accountant", months=6),
            ExperienceEntry(company="No title", months=40),
        ],
    )
    weights = dict(cv_section_texts(profile, "raw")["title"])
    assert weights == pytest.approx({"Accountant": HEADLINE_WEIGHT, "Senior Accountant": 96 / 102,
                                     "Barista": MIN_ROLE_MONTHS / 102})
    # Without a headline the roles alone; without any title the raw text's start.
    assert dict(cv_section_texts(profile.model_copy(update={"headline": None}), "raw")["title"]) == pytest.approx(
        {"Senior Accountant": 96 / 102, "Barista": 6 / 102})
    assert cv_section_texts(CVProfile(summary="Does books."), "Jo Bloggs, bookkeeper")["title"] == "Jo Bloggs, bookkeeper"


def test_embed_sections_empty_and_invalid(embedder: Embedder) -> None:
    assert embedder.embed_sections([]).shape == (0, len(SECTIONS), embedder.dim)
    with pytest.raises(ValueError, match="skills"):
        embedder.embed_sections([{"title": "a", "skills": " ", "experience": "c"}])
    with pytest.raises(ValueError, match="experience"):
        embedder.embed_sections([{"title": "a", "skills": "b"}])
    with pytest.raises(ValueError, match="title"):
        embedder.embed_sections([{"title": (("", 1.0), ("b", 0.0)), "skills": "b", "experience": "c"}])


# -------------------------------------------------------------------- section texts


def test_cv_sections_from_a_full_profile() -> None:
    s = cv_section_texts(_cv_profile(), "ignored raw text")
    assert set(s) == set(SECTIONS)
    assert [t for t, _ in s["title"]] == ["Senior Data Engineer", "Data Engineer", "Analyst"]
    assert s["skills"] == "Python, Apache Spark, SQL"
    assert s["experience"].startswith("Data engineer with eight years")
    assert "Data Engineer: Built Spark pipelines" in s["experience"]
    assert "Wrote SQL reports" in s["experience"]
    assert "ignored" not in repr(s)


def test_cv_sections_fall_back_to_raw_text() -> None:
    raw = "Jane Doe\n\nWarehouse  operative\n" + "lifting boxes " * 300
    s = cv_section_texts(CVProfile(), raw)
    assert all(s.values())
    assert s["title"].startswith("Jane Doe Warehouse operative")
    assert len(s["title"].split()) == MAX_TITLE_WORDS
    assert len(s["skills"].split()) == MAX_SECTION_WORDS
    assert s["experience"] == s["skills"]


def test_cv_titles_without_responsibilities_use_raw_text_for_experience() -> None:
    profile = CVProfile(experience=[ExperienceEntry(title="Welder")])
    s = cv_section_texts(profile, "Certified welder, ten years on pipelines.")
    assert s["title"] == (("Welder", 1.0),)
    assert s["experience"] == "Certified welder, ten years on pipelines."


def test_cv_sections_are_capped() -> None:
    long_item = " ".join(f"word{i}" for i in range(150))
    profile = CVProfile(
        skills=[SkillMention(name=f"Skill {i}") for i in range(150)],
        experience=[ExperienceEntry(title="Engineer", responsibilities=[long_item, long_item])],
    )
    s = cv_section_texts(profile, "raw")
    assert len(s["skills"].split()) == MAX_SECTION_WORDS
    assert len(s["experience"].split()) == MAX_SECTION_WORDS
    assert s["experience"].startswith("Engineer: word0 word1")


def test_empty_document_is_rejected() -> None:
    with pytest.raises(EmptyDocumentError):
        cv_section_texts(CVProfile(), "  \n\t ")
    with pytest.raises(EmptyDocumentError):
        jd_section_texts(JDProfile(), "")


def test_jd_sections() -> None:
    profile = JDProfile(
        title="Machine Learning Engineer",
        required_skills=["Python", "PyTorch"],
        preferred_skills=["Kubernetes", "Python"],
        responsibilities=["Train ranking models.", "Ship them to production."],
    )
    s = jd_section_texts(profile, "We are hiring.")
    assert s == {
        "title": "Machine Learning Engineer",
        "skills": "Python, PyTorch, Kubernetes",
        "experience": "Train ranking models. Ship them to production.",
    }
    bare = jd_section_texts(JDProfile(required_skills=["Go"]), "Backend role: Go services, on call.")
    assert bare["title"] == "Backend role: Go services, on call."
    assert bare["skills"] == "Go"
    assert bare["experience"] == "Backend role: Go services, on call."


def test_related_cv_and_jd_sections_align(embedder: Embedder) -> None:
    """A data engineering JD is closer, section by section, to a data engineer than to a cook."""
    jd = jd_section_texts(
        JDProfile(
            title="Data Engineer",
            required_skills=["Python", "Apache Spark"],
            responsibilities=["Build and run Spark data pipelines."],
        ),
        "",
    )
    cook = cv_section_texts(
        CVProfile(
            headline="Line Cook",
            skills=[SkillMention(name="Food Safety")],
            experience=[ExperienceEntry(title="Cook", responsibilities=["Prepared meals for 200 guests a night."])],
        ),
        "",
    )
    vectors = embedder.embed_sections([jd, cv_section_texts(_cv_profile(), ""), cook])
    to_engineer = (vectors[0] * vectors[1]).sum(axis=1)
    to_cook = (vectors[0] * vectors[2]).sum(axis=1)
    assert (to_engineer > to_cook).all()


def test_embedded_cv_round_trips_through_the_store(embedder: Embedder, tmp_path) -> None:
    profile = _cv_profile()
    text = "Senior Data Engineer\nPython, Spark, SQL"
    vectors = embedder.embed_sections([cv_section_texts(profile, text)])[0]
    store = Store(str(tmp_path / "db"), dim=embedder.dim)
    cv_id = document_id(text)
    store.upsert_cvs(
        [
            CVRecord(
                cv_id=cv_id,
                filename="cv.txt",
                text=text,
                profile=profile,
                stats=CVStats.of(profile),
                provenance=Provenance(model=embedder.model_name),
                features=cv_feature_columns(profile, text),
                vectors=vectors,
            )
        ]
    )
    got = store.get_cv(cv_id)
    assert got is not None
    np.testing.assert_array_equal(got.vectors, vectors)


@pytest.mark.slow
def test_loads_offline_in_a_fresh_process(tmp_path) -> None:
    """The bundled model loads with HF offline and every proxy pointing at a dead port."""
    code = textwrap.dedent(
        """
        from cvmatch_ray.config import Settings
        from cvmatch_ray.embed import Embedder
        e = Embedder.from_settings(Settings(embedding_batch_size=7))
        assert e.batch_size == 7 and e.device == "cpu"
        v = e.encode(["offline"])
        print(v.shape[1])
        """
    )
    dead = "http://127.0.0.1:9"
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache: nothing to fall back on
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "384"
    # No progress bars leak into the output of a load-and-encode.
    assert "Loading weights" not in out.stderr
    assert "Batches" not in out.stderr
