"""The HTTP API, over real HTTP on loopback, against the Serve application.

One Serve app per module on a free port with its own data directory, on the session's
shared Ray (``ray_cluster`` in conftest.py).
"""

from __future__ import annotations

import asyncio
import io
import math
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import lancedb
import pytest
import ray
from conftest import API_MAX_UPLOAD, RayCluster, Server
from conftest import API_TIMEOUT as TIMEOUT
from hostile_docs import inflating_docx
from test_erasure import Canary, versions_holding
from ray import serve
from ray.actor import ActorHandle

from cvmatch_ray.config import Settings
from cvmatch_ray.ids import document_id
from cvmatch_ray.match.rank import rank_stored
from cvmatch_ray.progress import (
    JobNotFoundError,
    JobStatus,
    ProgressClient,
    UploadStep,
    get_progress_actor,
)
from cvmatch_ray.schemas import CVPublic, MatchResult
from cvmatch_ray.serve.app import APP_NAME, AppArgs, build_app
from cvmatch_ray.serve.models import UploadAccepted
from cvmatch_ray.serve.deployments import EMBEDDER, EXTRACTOR, STANDARDIZER
from cvmatch_ray.serve.service import APIService, new_upload_job_id
from cvmatch_ray.serve.upload_worker import UPLOAD_PIPELINE, UploadRecord
from cvmatch_ray.storage.blobs import BlobStore
from cvmatch_ray.storage.tables import Store

pytestmark = pytest.mark.slow

MAX_UPLOAD = API_MAX_UPLOAD
N_MATCH_CVS = 300
# A task per few chunks even for a few hundred CVs (by default the driver scores a job this
# small in one go): the match job tests watch its progress move chunk by chunk.
SERVER_ARGS = {"match_task_min_cvs": 0}

SKILL_POOL = [
    "Python", "SQL", "Java", "Docker", "Kubernetes", "AWS", "React", "JavaScript", "TypeScript",
    "PostgreSQL", "Machine Learning", "Terraform", "Linux", "Git", "Spark", "Go", "C++", "Django",
    "Flask", "Pandas", "TensorFlow", "PyTorch", "Kafka", "Redis", "GraphQL", "Azure", "Airflow",
]
TITLES = ["Software Engineer", "Data Engineer", "Backend Developer", "Data Scientist", "DevOps Engineer",
          "Frontend Developer", "Machine Learning Engineer", "Site Reliability Engineer"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Hooli", "Stark Industries", "Wayne Tech"]
FIRST = ["Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn"]
LAST = ["Smith", "Garcia", "Nguyen", "Müller", "Rossi", "Kowalski", "Haddad", "Okafor", "Tanaka", "Silva"]


def cv_text(i: int) -> str:
    """A plausible plain-text CV, different for every ``i``."""
    name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}"
    skills = [SKILL_POOL[(i * 7 + k * 3) % len(SKILL_POOL)] for k in range(4 + i % 6)]
    title = TITLES[i % len(TITLES)]
    start = 2008 + i % 12
    mid = min(start + 2 + i % 4, 2022)
    lines = [
        name,
        title,
        f"{name.split()[0].lower()}.{i}@example.com | +44 20 7946 {i % 10000:04d} | London, UK",
        "",
        "SUMMARY",
        f"{title} with experience building reliable systems for {COMPANIES[i % len(COMPANIES)]} and others.",
        "",
        "SKILLS",
        ", ".join(dict.fromkeys(skills)),
        "",
        "EXPERIENCE",
        f"Senior {title} | {COMPANIES[(i + 1) % len(COMPANIES)]} | {mid}-01 - Present",
        f"- Built data pipelines in {skills[0]} serving {100 + i} customers",
        f"- Led migration to {skills[1]} and cut costs by {5 + i % 30}%",
        f"{title} | {COMPANIES[(i + 2) % len(COMPANIES)]} | {start}-03 - {mid - 1}-12",
        f"- Developed services with {skills[2]} and {skills[-1]}",
        "",
        "EDUCATION",
        f"{'BSc' if i % 3 else 'MSc'} Computer Science, University of Leeds, {start - 1}",
    ]
    return "\n".join(lines) + "\n"


JD_TEXT = """Senior Data Engineer

We are hiring a Senior Data Engineer to build our data platform.

Requirements:
- 5+ years of experience as a data engineer
- Strong Python and SQL
- Experience with Spark and Airflow
- Docker and Kubernetes

Nice to have:
- Kafka
- AWS

Responsibilities:
- Design and build batch and streaming data pipelines
- Own the reliability of the data platform

Education: Bachelor's degree in Computer Science or a related field.
"""


def pdf_bytes(text: str, *, title: str = "CV", image_only: bool = False, password: str | None = None) -> bytes:
    """A PDF of ``text`` (one line per line), a text-less scan, or an encrypted one."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.add_page()
    if image_only:
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (600, 800), "white")
        draw = ImageDraw.Draw(img)
        for y in range(40, 760, 24):
            draw.rectangle([40, y, 40 + (y * 7) % 500, y + 10], fill="black")  # "lines of text"
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pdf.image(buf, x=10, y=10, w=180)
    else:
        pdf.set_font("Helvetica", size=11)
        for line in text.splitlines():
            pdf.cell(0, 6, text=line.encode("latin-1", "replace").decode("latin-1"), new_x="LMARGIN", new_y="NEXT")
    if password:
        pdf.set_encryption(owner_password=password + "-owner", user_password=password)
    return bytes(pdf.output())


def docx_bytes(text: str) -> bytes:
    import docx

    document = docx.Document()
    for line in text.splitlines():
        document.add_paragraph(line)
    buf = io.BytesIO()
    document.save(buf)
    return buf.getvalue()


PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    return server.client


@pytest.fixture(scope="module")
def store(server: Server) -> Store:
    return Store(str(server.data_dir))


@pytest.fixture(scope="module")
def progress(server: Server) -> ActorHandle:
    """The progress actor the app reports to."""
    return get_progress_actor(server.args().to_settings())


def upload(client: httpx.Client, data: bytes, name: str = "cv.pdf", *, background: bool = True, **kw: Any) -> httpx.Response:
    return client.post(
        "/api/upload-cv",
        files={"file": (name, data, "application/octet-stream")},
        data={"background_processing": "true" if background else "false"},
        **kw,
    )


def wait_upload(client: httpx.Client, cv_id: str, timeout: float = 120.0) -> tuple[dict, list[str]]:
    """Poll an upload to its end; returns the last answer and the steps seen."""
    steps: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/cv-upload-progress/{cv_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        if not steps or steps[-1] != body["step"]:
            steps.append(body["step"])
        if body["step"] in ("done", "failed"):
            return body, steps
        time.sleep(0.01)
    raise AssertionError(f"upload {cv_id} did not finish; steps {steps}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300.0) -> tuple[dict, list[dict]]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/matching-progress/{job_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        seen.append(body)
        if body["status"] in ("succeeded", "failed", "cancelled"):
            return body, seen
        time.sleep(0.01)
    raise AssertionError(f"job {job_id} did not finish")


STEP_ORDER = ["queued", "extracting", "standardizing", "embedding", "storing", "done"]


# ---------------------------------------------------------------------------- tests


def test_health_and_docs(client: httpx.Client) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["standardizer"] == "rules"
    assert body["embedding_dim"] > 0
    assert body["auth"] is False
    spec = client.get("/openapi.json").json()
    for path in ("/api/upload-cv", "/api/cv-upload-progress/{cv_id}", "/api/upload-jd", "/api/match",
                 "/api/matching-progress/{job_id}", "/api/match-results/{job_id}", "/api/cvs/{cv_id}",
                 "/api/jds/{jd_id}", "/api/health"):
        assert path in spec["paths"], path
    assert "delete" in spec["paths"]["/api/cvs/{cv_id}"]
    assert set(spec["paths"]["/api/upload-jd"]["post"]["requestBody"]["content"]) == {
        "application/json", "multipart/form-data"}
    assert client.get("/docs").status_code == 200


def test_upload_background_steps_to_done_and_matches_sync(client: httpx.Client) -> None:
    text = cv_text(1)
    background_pdf = pdf_bytes(text, title="first")
    sync_pdf = pdf_bytes(text, title="second")  # same text, different bytes: another cv_id
    assert document_id(background_pdf) != document_id(sync_pdf)

    r = upload(client, background_pdf, "alex.pdf")
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted == {"cv_id": document_id(background_pdf), "status": "queued", "duplicate": False, "error": None}
    final, steps = wait_upload(client, accepted["cv_id"])
    assert final["status"] == "succeeded" and final["percent"] == 100.0 and final["error"] is None
    assert steps == sorted(steps, key=STEP_ORDER.index), steps
    assert steps[-1] == "done"
    stats = final["stats"]
    assert stats["skills_count"] > 0 and stats["responsibilities_count"] > 0
    assert "email" in stats["pii_fields_found"]

    r = upload(client, sync_pdf, "alex.pdf", background=False)
    assert r.status_code == 200, r.text
    sync_cv = r.json()
    assert sync_cv["cv_id"] == document_id(sync_pdf)
    background_cv = client.get(f"/api/cvs/{accepted['cv_id']}").json()
    assert background_cv["profile"] == sync_cv["profile"]
    assert background_cv["stats"] == sync_cv["stats"] == stats
    assert background_cv["provenance"] == sync_cv["provenance"]
    assert background_cv["filename"] == "alex.pdf"
    # The synchronous answer is what a later read returns.
    assert client.get(f"/api/cvs/{sync_cv['cv_id']}").json() == sync_cv
    # A synchronous upload reports its progress like a background one.
    assert client.get(f"/api/cv-upload-progress/{sync_cv['cv_id']}").json()["step"] == "done"


def test_upload_docx_and_text(client: httpx.Client) -> None:
    for data, name in ((docx_bytes(cv_text(2)), "cv.docx"), (cv_text(3).encode(), "cv.txt")):
        r = upload(client, data, name, background=False)
        assert r.status_code == 200, r.text
        assert r.json()["stats"]["skills_count"] > 0


def test_duplicate_upload_is_not_processed_twice(client: httpx.Client) -> None:
    data = pdf_bytes(cv_text(4), title="dup")
    first = upload(client, data)
    assert first.status_code == 202
    cv_id = first.json()["cv_id"]
    final, _ = wait_upload(client, cv_id)
    job_id = final["job_id"]

    again = upload(client, data)
    assert again.status_code == 200
    assert again.json() == {"cv_id": cv_id, "status": "done", "duplicate": True, "error": None}
    sync = upload(client, data, background=False)
    assert sync.status_code == 200 and sync.json()["cv_id"] == cv_id
    # Still the first upload's job: nothing was started again.
    assert client.get(f"/api/cv-upload-progress/{cv_id}").json()["job_id"] == job_id


def test_concurrent_duplicates_share_one_job(server: Server) -> None:
    data = pdf_bytes(cv_text(5), title="concurrent")

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as c:
            return await asyncio.gather(
                *(c.post("/api/upload-cv", files={"file": ("cv.pdf", data)},
                         data={"background_processing": "true" if i % 2 else "false"}) for i in range(4))
            )

    responses = asyncio.run(go())
    assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
    assert {r.json()["cv_id"] for r in responses} == {document_id(data)}
    final, _ = wait_upload(server.client, document_id(data))
    assert final["status"] == "succeeded"
    synced = [r.json() for r in responses if "profile" in r.json()]
    assert synced and all(s["profile"] == synced[0]["profile"] for s in synced)


@pytest.mark.parametrize(
    ("data", "name", "status", "code"),
    [
        (b"", "empty.pdf", 422, "empty_document"),
        (PNG_BYTES, "photo.png", 415, "unsupported_document_type"),
        (b"PK\x05\x06" + b"\x00" * 18, "archive.zip", 415, "unsupported_document_type"),
    ],
)
def test_refused_before_processing(client: httpx.Client, data: bytes, name: str, status: int, code: str) -> None:
    for background in (True, False):
        r = upload(client, data, name, background=background)
        assert r.status_code == status, r.text
        assert r.json()["detail"]["code"] == code


@pytest.mark.parametrize("kind", ["scanned", "encrypted"])
def test_unreadable_pdf_is_422_and_leaves_nothing(client: httpx.Client, server: Server, store: Store, kind: str) -> None:
    text = cv_text(6)
    data = pdf_bytes(text, image_only=True) if kind == "scanned" else pdf_bytes(text, password="secret")
    expected = {"scanned": "no_text_layer", "encrypted": "encrypted_document"}[kind]
    cv_id = document_id(data)

    r = upload(client, data, background=False)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["code"] == expected and detail["stage"] == "extract" and detail["message"]

    # In the background the same failure shows in the progress, with its reason.
    r = upload(client, data, background=True)
    assert r.status_code == 202
    final, _ = wait_upload(client, cv_id)
    assert final["status"] == "failed" and final["step"] == "failed"
    assert final["error"].startswith(expected)

    # Nothing half-written: no CV row, no raw bytes.
    assert client.get(f"/api/cvs/{cv_id}").status_code == 404
    assert not store.has_cv(cv_id)
    # What is kept, the pointer to the failure, no longer has the bytes or names the file.
    blob = BlobStore(str(server.data_dir)).get("upload", cv_id)
    record, raw = UploadRecord.unpack(blob)
    assert record.filename is None and raw is None and blob.endswith(b"}\n")


def test_zip_bomb_docx_is_422_too_complex_in_both_modes(client: httpx.Client, store: Store) -> None:
    bomb = inflating_docx(12 * 1024 * 1024)  # under the upload and archive limits, over the XML budget
    assert len(bomb) < MAX_UPLOAD
    cv_id = document_id(bomb)
    r = upload(client, bomb, "bomb.docx", background=False)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["code"] == "document_too_complex" and detail["stage"] == "extract" and detail["message"]

    r = upload(client, bomb, "bomb.docx", background=True)
    assert r.status_code == 202, r.text
    final, _ = wait_upload(client, cv_id)
    assert final["status"] == "failed" and final["error"].startswith("document_too_complex")
    assert not store.has_cv(cv_id)


def _replica_log_lines(ray_cluster: RayCluster, *needles: str, timeout: float = 30.0) -> list[str]:
    """The lines of the Serve replicas' log files holding any of ``needles``, once each
    needle is found (Serve may hand a line to its file a moment after it is logged)."""
    logs = Path(ray_cluster.temp_dir) / "session_latest" / "logs" / "serve"
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for f in logs.glob("replica_*.log") for line in f.read_text(errors="replace").splitlines()]
        found = [line for line in lines if any(n in line for n in needles)]
        if all(any(n in line for line in found) for n in needles) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_uploads_are_logged_in_the_replica_logs_without_personal_data(
    ray_cluster: RayCluster, client: httpx.Client
) -> None:
    if not ray_cluster.temp_dir:
        pytest.skip("a Ray head started elsewhere: its log folder is not known here")
    text = cv_text(977)
    data = pdf_bytes(text, title="logged")
    cv_id = document_id(data)
    assert upload(client, data, "logged.pdf").status_code == 202
    assert wait_upload(client, cv_id)[0]["step"] == "done"
    assert upload(client, data, "logged.pdf").json()["duplicate"] is True
    bomb = inflating_docx(12 * 1024 * 1024 + 4096)
    bomb_id = document_id(bomb)
    assert upload(client, bomb, "bomb.docx").status_code == 202
    assert wait_upload(client, bomb_id)[0]["status"] == "failed"
    assert client.delete(f"/api/cvs/{cv_id}").status_code == 200

    expected = [
        f"upload {cv_id} accepted ({len(data)} bytes, background=True)",
        f"upload {cv_id} stored",
        f"upload {cv_id} is a duplicate",
        f"upload {bomb_id} failed at extract: document_too_complex",
        f"CV {cv_id} deleted",
    ]
    lines = _replica_log_lines(ray_cluster, *expected)
    for needle in expected:
        assert any(needle in line for line in lines), (needle, lines)
    # Ids, sizes and codes only: not the file name, the person's name or e-mail.
    email = text.splitlines()[2].split(" | ")[0]
    for line in _replica_log_lines(ray_cluster, cv_id, bomb_id, timeout=0):
        assert "logged.pdf" not in line and "bomb.docx" not in line
        assert text.splitlines()[0] not in line and email not in line


def test_too_large_by_content_length_is_refused_before_the_body(server: Server) -> None:
    declared = MAX_UPLOAD * 100
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        head = (
            "POST /api/upload-cv HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Content-Type: multipart/form-data; boundary=xyz\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        )
        # Only the headers and a few bytes: an answer now means the body was never awaited.
        s.sendall(head.encode() + b"--xyz\r\n")
        chunks = []
        while chunk := s.recv(65536):  # the server closes: the body will never be read
            chunks.append(chunk)
        response = b"".join(chunks).decode("latin-1")
    assert response.startswith("HTTP/1.1 413"), response[:200]
    assert "document_too_large" in response


def test_too_large_while_streaming_is_413(client: httpx.Client) -> None:
    boundary = "b0undary"

    def body() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n"
               "Content-Type: text/plain\r\n\r\n").encode()
        chunk = b"lorem ipsum " * 5000
        for _ in range(4 * MAX_UPLOAD // len(chunk)):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    r = client.post("/api/upload-cv", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413, r.text
    assert r.json()["detail"]["code"] == "document_too_large"


def test_file_just_over_the_limit_is_413(client: httpx.Client) -> None:
    data = b"a" * (MAX_UPLOAD + 1)
    r = upload(client, data, "big.txt")
    assert r.status_code == 413
    assert r.json()["detail"]["code"] == "document_too_large"


def test_malformed_requests_are_422(client: httpx.Client) -> None:
    assert client.post("/api/upload-cv", data={"background_processing": "true"}).status_code == 422  # no file
    r = client.post("/api/upload-cv", files={"file": ("cv.txt", cv_text(7).encode())},
                    data={"background_processing": "maybe"})
    assert r.status_code == 422
    r = client.post("/api/upload-cv", content=b"--nope\r\ngarbage", headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert r.status_code == 422
    assert client.post("/api/upload-jd", json={"txt": "x"}).status_code == 422
    assert client.post("/api/upload-jd", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post("/api/upload-jd", content=b"text", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/match", json={"jd_id": "0" * 32, "chunk_size": 0}).status_code == 422
    assert client.post("/api/match", json={"jd_id": "0" * 32, "surprise": 1}).status_code == 422
    assert client.get("/api/match-results/x?top_k=0").status_code == 422


def test_unknown_ids_are_404(client: httpx.Client) -> None:
    unknown = "f" * 32
    for path in (f"/api/cvs/{unknown}", f"/api/jds/{unknown}", f"/api/cv-upload-progress/{unknown}",
                 f"/api/matching-progress/{unknown}", f"/api/match-results/{unknown}",
                 "/api/cvs/not-an-id", "/api/matching-progress/job_0000"):
        assert client.get(path).status_code == 404, path
    assert client.delete(f"/api/cvs/{unknown}").status_code == 404
    assert client.post("/api/match", json={"jd_id": unknown}).status_code == 404


def test_upload_jd_as_text_and_file(client: httpx.Client) -> None:
    r = client.post("/api/upload-jd", json={"text": JD_TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["jd_id"] == document_id(JD_TEXT) and body["duplicate"] is False
    assert "Python" in body["profile"]["required_skills"]
    again = client.post("/api/upload-jd", json={"text": JD_TEXT}).json()
    assert again["duplicate"] is True and again["profile"] == body["profile"]
    stored = client.get(f"/api/jds/{body['jd_id']}").json()
    assert stored["profile"] == body["profile"]

    data = docx_bytes(JD_TEXT)
    r = client.post("/api/upload-jd", files={"file": ("jd.docx", data)})
    assert r.status_code == 200, r.text
    assert r.json()["jd_id"] == document_id(data)
    assert set(r.json()["profile"]["required_skills"]) == set(body["profile"]["required_skills"])
    assert client.post("/api/upload-jd", json={"text": "   "}).status_code == 422


def test_match_jobs_gives_the_forward_scores(client: httpx.Client, store: Store) -> None:
    from cvmatch_ray.match.rank import rank_stored

    jd_id = client.post("/api/upload-jd", json={"text": JD_TEXT}).json()["jd_id"]
    r = upload(client, pdf_bytes(cv_text(901)), "reverse.pdf", background=False)
    assert r.status_code == 200, r.text
    cv_id = r.json()["cv_id"]
    answer = client.post("/api/match-jobs", json={"cv_id": cv_id})
    assert answer.status_code == 200, answer.text
    results = {x["jd_id"]: x for x in answer.json()["results"]}
    [forward] = rank_stored(store, jd_id, [cv_id])
    assert results[jd_id] == forward.model_dump(mode="json")
    assert client.post("/api/match-jobs", json={"cv_id": "0" * 32}).status_code == 404
    assert client.post("/api/match-jobs", json={"cv_id": "not hex!"}).status_code == 404  # as every malformed id


def test_best_cvs_of_the_pool_equal_the_full_ranking(client: httpx.Client, store: Store) -> None:
    from cvmatch_ray.match.rank import rank_stored

    jd_id = client.post("/api/upload-jd", json={"text": JD_TEXT}).json()["jd_id"]
    for i in range(3):
        assert upload(client, pdf_bytes(cv_text(950 + i)), f"pool{i}.pdf", background=False).status_code == 200
    answer = client.get(f"/api/jds/{jd_id}/best-cvs", params={"top_k": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["exact"] is True and body["pool"] == store.count_cvs() and body["count"] == 3
    expected = rank_stored(store, jd_id, top_k=3)
    assert body["results"] == [r.model_dump(mode="json") for r in expected]
    assert client.get(f"/api/jds/{'0' * 32}/best-cvs").status_code == 404
    assert client.get(f"/api/jds/{jd_id}/best-cvs", params={"top_k": 0}).status_code == 422


def test_match_job_moves_chunk_by_chunk_and_equals_in_process_ranking(
    client: httpx.Client, server: Server, store: Store
) -> None:
    from cvmatch_ray.local_ingest import LocalIngestor

    ingestor = LocalIngestor.from_settings(Settings(data_dir=str(server.data_dir)))
    outcomes = ingestor.ingest(((f"cv{i}.txt", cv_text(1000 + i).encode()) for i in range(N_MATCH_CVS)), batch_size=64)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok][:3]
    jd_id = client.post("/api/upload-jd", json={"text": JD_TEXT}).json()["jd_id"]
    n = store.count_cvs()
    assert n >= N_MATCH_CVS

    chunk = 10
    r = client.post("/api/match", json={"jd_id": jd_id, "chunk_size": chunk})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    partial_counts: list[int] = []
    seen: list[dict] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        progress = client.get(f"/api/matching-progress/{job_id}").json()
        seen.append(progress)
        if progress["status"] in ("succeeded", "failed"):
            break
        if progress["status"] == "running" and len(partial_counts) < 50:
            partial_counts.append(client.get(f"/api/match-results/{job_id}").json()["count"])
        time.sleep(0.01)
    final = seen[-1]
    assert final["status"] == "succeeded", final
    assert final["total_chunks"] == math.ceil(n / chunk)
    assert final["current_chunk"] == final["total_chunks"]
    assert final["processed"] == n and final["failed"] == 0 and final["percent"] == 100.0
    assert final["seconds_per_chunk"] > 0 and final["total_seconds"] > 0 and final["eta_seconds"] == 0
    chunks = [p["current_chunk"] for p in seen]
    assert chunks == sorted(chunks)
    assert len(set(chunks)) >= 3, chunks  # seen moving, not jumping from 0 to done
    assert [p["percent"] for p in seen] == sorted(p["percent"] for p in seen)
    assert partial_counts == sorted(partial_counts)
    # The JD id answers for its latest job.
    assert client.get(f"/api/matching-progress/{jd_id}").json()["job_id"] == job_id

    results = client.get(f"/api/match-results/{job_id}").json()
    assert results["complete"] is True and results["count"] == n
    api = [MatchResult.model_validate(x) for x in results["results"]]
    expected = rank_stored(store, jd_id, weights=Settings().weights)
    assert api == expected
    top = client.get(f"/api/match-results/{job_id}", params={"top_k": 5}).json()
    assert [x["cv_id"] for x in top["results"]] == [m.cv_id for m in expected[:5]]


def test_match_unknown_cvs_fail_one_by_one(client: httpx.Client, store: Store) -> None:
    jd_id = document_id(JD_TEXT)
    known = store.list_cv_ids()[:3]
    unknown = ["a" * 32, "b" * 32]
    r = client.post("/api/match", json={"jd_id": jd_id, "cv_ids": known + unknown, "chunk_size": 2, "top_k": 2})
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    final, _ = wait_job(client, job_id)
    assert final["status"] == "succeeded"
    assert final["processed"] == 5 and final["failed"] == 2
    assert {f["item_id"] for f in final["failures"]} == set(unknown)
    results = client.get(f"/api/match-results/{job_id}").json()
    assert results["count"] == 2  # the request's top_k
    expected = rank_stored(store, jd_id, known, top_k=2)
    assert [MatchResult.model_validate(x) for x in results["results"]] == expected
    assert client.post("/api/match", json={"jd_id": jd_id, "cv_ids": ["../etc"]}).status_code == 422


def test_delete_removes_the_cv_everywhere(
    client: httpx.Client, server: Server, store: Store, progress: ActorHandle
) -> None:
    canary = Canary()  # an e-mail and a word found in no other file
    data = canary.data
    cv_id = upload(client, data, "canary.txt", background=False).json()["cv_id"]
    upload_job = client.get(f"/api/cv-upload-progress/{cv_id}").json()["job_id"]
    # An earlier, failed attempt: its job is no longer named by the upload record.
    earlier_job = new_upload_job_id()
    ray.get(progress.create.remote(earlier_job, "upload", 1, cv_id=cv_id))
    ray.get(progress.finish.remote(earlier_job, JobStatus.failed, "internal_error: processing failed"))
    jd_id = document_id(JD_TEXT)
    job_id = client.post("/api/match", json={"jd_id": jd_id, "cv_ids": [cv_id]}).json()["job_id"]
    wait_job(client, job_id)
    assert client.get(f"/api/match-results/{job_id}").json()["count"] == 1
    assert canary.files_holding_it(server.data_dir)

    r = client.delete(f"/api/cvs/{cv_id}")
    assert r.status_code == 200 and r.json() == {"cv_id": cv_id, "deleted": True}
    assert client.get(f"/api/cvs/{cv_id}").status_code == 404
    assert client.get(f"/api/cv-upload-progress/{cv_id}").status_code == 404
    assert client.get(f"/api/match-results/{job_id}").json()["count"] == 0
    assert client.delete(f"/api/cvs/{cv_id}").status_code == 404
    db = lancedb.connect(str(server.data_dir))
    for table, column in (("cvs", "cv_id"), ("matches", "cv_id")):
        assert db.open_table(table).count_rows(f"{column} = '{cv_id}'") == 0, table
    assert not BlobStore(str(server.data_dir)).exists("upload", cv_id)
    # Every upload attempt's progress job is forgotten, in the actor and in its table...
    jobs = db.open_table("jobs")
    assert jobs.count_rows(f"job_id IN ('{upload_job}', '{earlier_job}')") == 0
    assert ray.get(progress.jobs_of_cv.remote(cv_id)) == []
    for gone in (upload_job, earlier_job):
        with pytest.raises(JobNotFoundError):
            ray.get(progress.get.remote(gone))
    # ... while the match job, which names the JD, keeps its row (its results for the CV went).
    assert jobs.count_rows(f"job_id = '{job_id}'") == 1
    assert client.get(f"/api/matching-progress/{job_id}").json()["status"] == "succeeded"
    # Erased, not only deleted: no file under the data dir holds it, no version has a row of it.
    assert canary.files_holding_it(server.data_dir) == []
    assert versions_holding(server.data_dir, canary) == []
    # Uploading it again starts afresh.
    r = upload(client, data)
    assert r.status_code == 202 and r.json()["duplicate"] is False
    assert wait_upload(client, cv_id)[0]["status"] == "succeeded"


STALE = timedelta(seconds=2)


def _api_replica(
    server: Server, store: Store, progress: ActorHandle, *, clock: Callable[[], datetime] | None = None
) -> APIService:
    """Another API replica's service: the running app's deployments and progress actor."""
    settings = server.args().to_settings()
    return APIService(
        settings=settings,
        store=store,
        blobs=BlobStore(settings.data_dir),
        progress=ProgressClient(settings, actor=progress),
        extractor=serve.get_deployment_handle(EXTRACTOR, APP_NAME),
        standardizer=serve.get_deployment_handle(STANDARDIZER, APP_NAME),
        embedder=serve.get_deployment_handle(EMBEDDER, APP_NAME),
        pipeline=serve.get_deployment_handle(UPLOAD_PIPELINE, APP_NAME),
        embedding_model="unused",
        standardizer_backend="rules",
        **({"clock": clock} if clock is not None else {}),
    )


def _abandoned_upload(
    server: Server,
    progress: ActorHandle,
    data: bytes,
    *,
    step: UploadStep | None = None,
    end: JobStatus | None = None,
    job: bool = True,
    raw: bool = True,
    age: timedelta = timedelta(0),
) -> UploadRecord:
    """What a replica that died mid-upload leaves: the upload blob and (with ``job``) its job."""
    cv_id = document_id(data)
    record = UploadRecord(
        cv_id=cv_id, job_id=new_upload_job_id(), filename="stalled.pdf", content_type="application/pdf",
        size=len(data), accepted_at=datetime.now(UTC) - age,
    )
    BlobStore(str(server.data_dir)).put("upload", cv_id, record.pack(data if raw else None))
    if job:
        ray.get(progress.create.remote(record.job_id, "upload", 1, cv_id=cv_id))
    if step is not None:
        ray.get(progress.set_step.remote(record.job_id, step))
    if end is not None:
        ray.get(progress.finish.remote(record.job_id, end))
    return record


def _wait_stood_still(progress: ActorHandle, job_ids: list[str], still_for: timedelta) -> None:
    """Wait until none of ``job_ids`` has changed for ``still_for`` (same host clock as the actor)."""
    last_change = max(ray.get(progress.get.remote(job_id)).updated_at for job_id in job_ids)
    while datetime.now(UTC) - last_change <= still_for:
        time.sleep(0.05)


def test_unfinished_uploads_are_put_back_in_line(
    client: httpx.Client, server: Server, store: Store, progress: ActorHandle
) -> None:
    stalled_data = pdf_bytes(cv_text(21), title="stalled")
    stalled = _abandoned_upload(server, progress, stalled_data, step=UploadStep.standardizing)
    ended = _abandoned_upload(server, progress, pdf_bytes(cv_text(22), title="ended"), end=JobStatus.cancelled)
    lost = _abandoned_upload(server, progress, pdf_bytes(cv_text(23), title="lost"), step=UploadStep.extracting, raw=False)
    # Accepted, but its replica died before the job reached the progress actor.
    orphan = _abandoned_upload(server, progress, pdf_bytes(cv_text(25), title="orphan"), job=False, age=2 * STALE)
    # The progress actor judges a job stalled by its own clock, which the app owns: the
    # jobs have to stand still for STALE for real (waiting longer changes nothing).
    _wait_stood_still(progress, [stalled.job_id, lost.job_id], STALE)
    fresh = _abandoned_upload(server, progress, pdf_bytes(cv_text(24), title="fresh"))
    young = _abandoned_upload(server, progress, pdf_bytes(cv_text(26), title="young"), job=False)

    async def recover() -> tuple[int, int, tuple[int, Any], tuple[int, Any]]:
        # The replicas judge the age of accepted uploads as of the moment the young one was
        # accepted, however long this test takes to get here.
        replica = _api_replica(server, store, progress, clock=lambda: young.accepted_at)
        other = _api_replica(server, store, progress, clock=lambda: young.accepted_at)
        requeued = await replica.recover_uploads(stale_after=STALE)
        # Another replica's round finds nothing left to put back.
        elsewhere = await other.recover_uploads(stale_after=STALE)
        # The same bytes uploaded meanwhile join the upload in line, never start another.
        joined = await replica.upload_cv(stalled_data, filename="again.pdf", content_type=None, background=True)
        stored = await replica.upload_cv(stalled_data, filename="again.pdf", content_type=None, background=False)
        return requeued, elsewhere, joined, stored

    requeued, elsewhere, joined, stored = asyncio.run(recover())
    assert (requeued, elsewhere) == (3, 0)  # stalled, lost, orphan (young is too young to judge)
    assert isinstance(joined, UploadAccepted) and joined.duplicate is True
    assert isinstance(stored, CVPublic) and stored.cv_id == stalled.cv_id

    # The app's pipeline claimed them from the line and finished them.
    for record in (stalled, orphan):
        final, _ = wait_upload(client, record.cv_id)
        assert (final["job_id"], final["status"], final["step"]) == (record.job_id, "succeeded", "done")
        assert final["stats"]["skills_count"] > 0
        cv = client.get(f"/api/cvs/{record.cv_id}")
        assert cv.status_code == 200 and cv.json()["filename"] == "stalled.pdf"  # the record's, not the duplicate's
    final, _ = wait_upload(client, lost.cv_id)
    assert (final["status"], final["step"]) == ("failed", "failed") and final["error"].startswith("internal_error: ")
    assert (final["error_code"], final["error_stage"]) == ("internal_error", "store")  # stored as fields

    # Neither the ended nor the fresh upload was touched, nor the young one without a job.
    expected = ((ended, "cancelled", "queued"), (fresh, "queued", "queued"), (young, "queued", "queued"))
    for record, status, step in expected:
        body = client.get(f"/api/cv-upload-progress/{record.cv_id}").json()
        assert (body["job_id"], body["status"], body["step"]) == (record.job_id, status, step), body
        assert not store.has_cv(record.cv_id)
    untouched = ray.get(progress.get.remote(fresh.job_id))
    assert untouched.updated_at == untouched.created_at  # not even claimed
    assert ray.get(progress.known.remote([young.job_id])) == []
    for record in (ended, fresh, lost, young):
        assert client.delete(f"/api/cvs/{record.cv_id}").status_code == 200
        assert client.get(f"/api/cv-upload-progress/{record.cv_id}").status_code == 404


def test_api_keys(server: Server) -> None:
    """Last: redeploys the app with keys on."""
    serve.run(build_app(server.args(api_keys=["k-one", "k-two"])), name=APP_NAME, route_prefix="/")
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.get("/api/health").json()["auth"] is True  # open: probes carry no key
        assert c.get("/docs").status_code == 200
        cv_id = "f" * 32
        assert c.get(f"/api/cvs/{cv_id}").status_code == 401
        assert c.get(f"/api/cvs/{cv_id}", headers={"X-API-Key": "nope"}).status_code == 401
        assert c.get(f"/api/cvs/{cv_id}", headers={"X-API-Key": "k-two"}).status_code == 404
        # Refused before the body is read, whatever its size.
        r = c.post("/api/upload-cv", files={"file": ("cv.txt", b"x" * 1000)})
        assert r.status_code == 401
        r = c.post("/api/upload-jd", json={"text": JD_TEXT}, headers={"X-API-Key": "k-one"})
        assert r.status_code == 200 and r.json()["duplicate"] is True


def _niceness(pid: int) -> int:
    # /proc/PID/stat after the command name: state ppid ... priority nice (index 16).
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads niceness from /proc (Linux)")
def test_background_replicas_yield_the_cpu_to_the_ingress(ray_cluster, client: httpx.Client) -> None:
    from ray.util.state import list_actors

    assert client.get("/api/health").status_code == 200
    pids = {
        a.class_name.rsplit(":", 1)[-1]: a.pid
        for a in list_actors(address=ray_cluster.dashboard_url, filters=[("state", "=", "ALIVE")], detail=True, limit=1000)
        if a.class_name.startswith(f"ServeReplica:{APP_NAME}:")
    }
    assert set(pids) >= {"APIIngress", "UploadPipeline", "Extractor", "Standardizer", "Embedder"}
    ingress = _niceness(pids["APIIngress"])
    lowered = Settings().background_niceness
    assert lowered > 0
    for name in ("UploadPipeline", "Extractor", "Standardizer", "Embedder"):
        # Lowered by background_niceness, up to the floor of 19.
        assert _niceness(pids[name]) == min(ingress + lowered, 19) > ingress, name


def test_serve_configs_ask_for_the_documented_resources() -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    root = Path(__file__).resolve().parents[1]
    for name, gpus in (("serve_config.yaml", {}), ("serve_config.gpu.yaml", {"Embedder": 0.25, "Standardizer": 0.5})):
        config = ServeDeploySchema.model_validate(yaml.safe_load((root / name).read_text()))
        (app,) = config.applications
        assert app.import_path == "cvmatch_ray.serve.app:build_app"
        AppArgs.model_validate(app.args)
        deployments = {d.name: d for d in app.deployments}
        assert set(deployments) == {"APIIngress", "UploadPipeline", "Extractor", "Standardizer", "Embedder"}
        for dep_name, d in deployments.items():
            assert (d.ray_actor_options.num_gpus or 0) == gpus.get(dep_name, 0), (name, dep_name)
        if not gpus:
            assert sum(d.ray_actor_options.num_cpus for d in deployments.values()) <= 1.0


def test_match_requests_are_bounded(server: Server, store: Store, progress: ActorHandle) -> None:
    from cvmatch_ray.pipelines.matching import bounded_chunk_size
    from cvmatch_ray.serve.http import error_response
    from cvmatch_ray.serve.models import MatchRequest
    from cvmatch_ray.serve.errors import RequestTooLarge

    replica = _api_replica(server, store, progress)
    replica.settings = replica.settings.model_copy(update={"match_max_cvs": 3, "match_max_chunks": 4})
    request = MatchRequest(jd_id="f" * 32, cv_ids=[f"{i:032x}" for i in range(4)], chunk_size=1)
    with pytest.raises(RequestTooLarge) as refused:
        asyncio.run(replica.submit_match(request))
    assert error_response(refused.value).status_code == 413
    # However small the chunks asked for, a job has at most match_max_chunks of them.
    assert [bounded_chunk_size(replica.settings, n, 1) for n in (3, 4, 5, 100_000)] == [1, 1, 2, 25_000]
    assert bounded_chunk_size(replica.settings, 10) == replica.settings.match_chunk_size


def test_file_names_lose_control_and_bidi_characters() -> None:
    from cvmatch_ray.serve.routes.cvs import upload_filename

    # U+202E turns "cv\u202efdp.exe" into "cvexe.pdf" on screen.
    assert upload_filename("C:\\Users\\x\\cv\u202efdp.exe") == "cvfdp.exe"
    assert upload_filename("a\u2066b\u200fc\x00d.pdf") == "abcd.pdf"


def test_a_delete_wins_over_a_row_written_in_flight(tmp_path) -> None:
    """The upload worker's check after writing a row: the row stays while the upload is
    the one it processed, and is taken back once the upload was deleted (DELETE removes the
    blob first) or replaced by another attempt. Real blob store and LanceDB."""
    from test_store import _cv

    from cvmatch_ray.errors import UnknownDocument
    from cvmatch_ray.serve.upload_worker import TenantData, UploadPipelineDeployment

    worker = object.__new__(UploadPipelineDeployment.func_or_class)
    # No other writer here: erasure need not wait for one.
    where = TenantData(Store(str(tmp_path), erase_grace=timedelta(0)), BlobStore(str(tmp_path)))
    cv = _cv(1)
    record = UploadRecord(cv_id=cv.cv_id, job_id=new_upload_job_id(), size=3, accepted_at=datetime.now(UTC))
    where.blobs.put("upload", cv.cv_id, record.pack(b"abc"))
    where.store.upsert_cvs([cv])
    asyncio.run(worker._unless_deleted(where, record))  # still wanted: kept
    assert where.store.has_cv(cv.cv_id)

    where.blobs.delete("upload", cv.cv_id)  # what DELETE does first
    with pytest.raises(UnknownDocument):
        asyncio.run(worker._unless_deleted(where, record))
    assert not where.store.has_cv(cv.cv_id)

    where.store.upsert_cvs([cv])  # a later attempt owns the upload now: this one's row goes too
    later = record.model_copy(update={"job_id": new_upload_job_id()})
    where.blobs.put("upload", cv.cv_id, later.pack(b"abc"))
    with pytest.raises(UnknownDocument):
        asyncio.run(worker._unless_deleted(where, record))
    assert not where.store.has_cv(cv.cv_id)
