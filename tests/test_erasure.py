"""Erasure: once a CV is deleted, no byte of it is left under the data directory.

The "grep canary" tests: a CV carrying a unique e-mail and a unique word goes through the
real processing path into a temporary data directory (LanceDB on disk), is matched, indexed
and re-ingested (so old row versions exist), then deleted. Every file under the directory
is read as bytes and must not hold the canary, no version a checkout can reach may hold a
row of it, and the full-text index must not know its words. Each test first checks that the
canary is there to be found, so a pass means it was removed, not that grep cannot see it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from datetime import timedelta
from pathlib import Path

import lancedb
import pytest
from lance.file import LanceFileReader
from lancedb.index import FTS

from cvmatch_ray.config import Settings
from cvmatch_ray.ids import document_id
from cvmatch_ray.local_ingest import LocalIngestor
from cvmatch_ray.match.features import LEXICAL_TEXT_COLUMN
from cvmatch_ray.match.rank import jd_features, job_results, score_stored
from cvmatch_ray.match.results import match_rows
from cvmatch_ray.pipelines.matching import new_job_id
from cvmatch_ray.standardize import make_standardizer
from cvmatch_ray.storage.jobs import JobTable
from cvmatch_ray.storage.tables import Store

SKILLS = ["Python", "SQL", "Docker", "Kubernetes", "Spark", "Airflow", "AWS", "Kafka"]

JD = b"""Senior Data Engineer

Requirements:
- 5+ years of experience as a data engineer
- Strong Python and SQL
- Experience with Spark and Airflow
"""


def cv_text(i: int, *, email: str | None = None, word: str | None = None) -> str:
    skills = ", ".join(SKILLS[(i + k) % len(SKILLS)] for k in range(4))
    extra = f" and {word}" if word else ""
    return "\n".join([
        f"Person {i}",
        "Data Engineer",
        email or f"person{i}@example.com",
        "",
        "EXPERIENCE",
        f"Data Engineer, Company {i}, 2015 - 2023",
        f"- Built pipelines with {skills}{extra}",
        "",
        "SKILLS",
        f"{skills}{extra}",
    ]) + "\n"


class Canary:
    """A CV that carries strings found nowhere else: its e-mail and a made-up word."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.email = f"canary-{tag}@example.org"
        self.word = f"zq{tag}canary"
        self.data = cv_text(999, email=self.email, word=self.word).encode()
        self.cv_id = document_id(self.data)
        self.needles = (self.email.encode(), self.word.encode(), self.word.lower().encode())

    def files_holding_it(self, root: Path) -> list[str]:
        """Every file under ``root`` whose bytes hold the e-mail or the word."""
        hits = []
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as f:
                    content = f.read()
                if any(n in content for n in self.needles):
                    hits.append(os.path.relpath(path, root))
        return sorted(hits)


def versions_holding(root: Path, canary: Canary) -> list[str]:
    """``table@version`` for every reachable version of every table with a row of the CV."""
    db = lancedb.connect(str(root))
    found = []
    for name in db.table_names():
        table = db.open_table(name)
        for v in table.list_versions():
            table.checkout(v["version"])
            rows = table.to_arrow().to_pylist()
            if any(canary.cv_id in str(r) or canary.email in str(r) or canary.word in str(r) for r in rows):
                found.append(f"{name}@{v['version']}")
        table.checkout_latest()
    return found


def fts_words(root: Path) -> tuple[list[bytes], list[bytes]]:
    """The word list of the ``cvs`` full-text index, and that of one built afresh from the
    rows left (each an FST per partition: there a word is not stored as plain bytes, so
    grep cannot see it; an index that kept a deleted CV's words would differ)."""
    db = lancedb.connect(str(root))
    cvs = db.open_table("cvs")
    fresh = db.create_table("fts_check", cvs.to_arrow().select([LEXICAL_TEXT_COLUMN]))
    fresh.create_index(LEXICAL_TEXT_COLUMN, config=FTS(with_position=False))
    try:
        return _words(root / "cvs.lance", cvs), _words(root / "fts_check.lance", fresh)
    finally:
        db.drop_table("fts_check")


def _words(folder: Path, table) -> list[bytes]:
    (index,) = [ix for ix in table.to_lance().describe_indices() if ix.index_type == "Inverted"]
    (segment,) = index.segments
    files = sorted((folder / "_indices" / str(segment.uuid)).glob("*tokens.lance"))
    assert files
    return [LanceFileReader(str(f)).read_all().to_table().column("_token_fst_bytes")[0].as_py() for f in files]


@pytest.fixture(scope="module")
def ingestor(embedder, tmp_path_factory) -> LocalIngestor:
    settings = Settings()
    data_dir = tmp_path_factory.mktemp("unused")
    return LocalIngestor(
        settings=settings, store=Store(str(data_dir)), standardizer=make_standardizer(settings), embedder=embedder
    )


def ingest(
    ingestor: LocalIngestor, root: Path, docs: list[tuple[str, bytes]], *, kind: str = "cv",
    grace: timedelta = timedelta(0),
) -> Store:
    """Run ``docs`` through the processing path into the store at ``root``."""
    store = Store(str(root), erase_grace=grace)
    ingestor.store = store
    outcomes = ingestor.ingest(docs, kind=kind)
    assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
    return store


def test_a_deleted_cv_leaves_no_byte_behind(ingestor: LocalIngestor, tmp_path: Path) -> None:
    canary = Canary()
    others = [(f"cv{i}.txt", cv_text(i).encode()) for i in range(40)]
    store = ingest(ingestor, tmp_path, others[:20])
    ingest(ingestor, tmp_path, [("canary.txt", canary.data)])
    ingest(ingestor, tmp_path, others[20:])
    ingest(ingestor, tmp_path, [("jd.txt", JD)], kind="jd")
    # Stored twice: the first row is superseded (soft-deleted), not gone.
    store.upsert_cvs([store.get_cv(canary.cv_id)])
    for i in range(3):  # more commits, so that old versions pile up
        store.upsert_cvs([store.get_cv(document_id(others[i][1]))])
    # Indexed after the last write, so the index covers every row (compared below with
    # one built afresh).
    store.ensure_search_indexes(ann_min_rows=10**9)
    jd_id = document_id(JD)
    batch = score_stored(store, jd_features(store, jd_id))
    results = batch.top()
    assert canary.cv_id in {r.cv_id for r in results}
    job_id = new_job_id()
    store.write_match_rows(job_id, match_rows(batch))

    assert any(h.startswith("cvs.lance/data/") for h in canary.files_holding_it(tmp_path))
    assert "matches@" in " ".join(versions_holding(tmp_path, canary))
    held, fresh = fts_words(tmp_path)
    assert held == fresh  # the canary's words are in both
    found = {cv_id for cv_id, _ in store.search_cvs_text("python", limit=100)}
    assert canary.cv_id in found

    assert store.delete_cv(canary.cv_id)

    assert store.get_cv(canary.cv_id) is None
    assert canary.cv_id not in {r.cv_id for r in job_results(store, job_id)}
    assert store.count_matches(job_id) == len(results) - 1
    assert canary.files_holding_it(tmp_path) == []
    assert versions_holding(tmp_path, canary) == []
    held, fresh = fts_words(tmp_path)
    assert held == fresh
    # The rest is intact, and searchable as before.
    assert store.count_cvs() == len(others)
    assert {cv_id for cv_id, _ in store.search_cvs_text("python", limit=100)} == found - {canary.cv_id}
    assert not store.delete_cv(canary.cv_id)


def test_the_jobs_table_forgets_for_good(tmp_path: Path) -> None:
    canary = Canary()
    jobs = JobTable(str(tmp_path), erase_grace=timedelta(0))
    job_id = new_job_id()
    rows = [
        {"job_id": new_job_id(), "kind": "upload", "jd_id": None, "status": "succeeded",
         "state_json": f'{{"cv_id": "cv{i}"}}'}
        for i in range(5)
    ]
    jobs.upsert(rows[:3])
    jobs.upsert([{"job_id": job_id, "kind": "upload", "jd_id": None, "status": "failed",
                  "state_json": f'{{"cv_id": "{canary.cv_id}", "error": "{canary.email}"}}'}])
    jobs.upsert(rows[3:])
    assert canary.files_holding_it(tmp_path)

    assert jobs.delete([job_id]) == 1
    jobs.erase_deleted()

    assert jobs.find(job_id) is None and len(jobs.load_all()) == 5
    assert canary.files_holding_it(tmp_path) == []
    assert versions_holding(tmp_path, canary) == []


def test_deletes_alongside_concurrent_writers(ingestor: LocalIngestor, tmp_path: Path) -> None:
    """Writers keep committing to the tables an erasure rewrites: nothing is lost, and the
    deleted CVs are gone for good."""
    canaries = [Canary() for _ in range(3)]
    plain = cv_text(1).encode()
    docs = [(f"c{i}.txt", c.data) for i, c in enumerate(canaries)] + [("p.txt", plain)]
    # A grace longer than any of the writer's commits takes.
    store = ingest(ingestor, tmp_path, docs, grace=timedelta(seconds=1))
    template = store.get_cv(document_id(plain))
    others = [template] + [dataclasses.replace(template, cv_id=document_id(f"other-{i}")) for i in range(1, 60)]
    store.upsert_cvs(others[:10])
    writer_store = Store(str(tmp_path), compact_every=None)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(10, 60, 5):
                writer_store.upsert_cvs(others[i : i + 5])
        except BaseException as e:  # reported by the test thread below
            errors.append(e)

    writer = threading.Thread(target=write)
    deleters = [threading.Thread(target=store.delete_cv, args=(c.cv_id,)) for c in canaries]
    writer.start()
    for t in deleters:
        t.start()
    for t in (writer, *deleters):
        t.join()

    assert errors == []
    assert store.count_cvs() == len(others)
    assert set(store.list_cv_ids()) == {o.cv_id for o in others}
    for c in canaries:
        assert c.files_holding_it(tmp_path) == []
        assert versions_holding(tmp_path, c) == []
