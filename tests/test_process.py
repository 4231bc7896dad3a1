"""One processing path: every front end stores the same rows, and a bad item fails alone.

The front ends only schedule ``cvmatch_ray.process``: the CLI in this process, Ray Data
(``run_ingest``), the API's upload worker and its JD route. One document through each of
them must give the same LanceDB row (timestamps aside).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import lancedb
import numpy as np
from typer.testing import CliRunner

from cvmatch_ray.cli import app as cli_app
from cvmatch_ray.config import Settings
from cvmatch_ray.errors import ErrorCode, ProcessingError, Stage
from cvmatch_ray.local_ingest import LocalIngestor
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.process import STEPS, Failed, Processed, RawDocument, StageTimes, run_batch
from cvmatch_ray.serve.http import http_status
from cvmatch_ray.standardize import make_standardizer
from cvmatch_ray.storage.tables import Store

CV_FILE = "amelie_dubois_backend.pdf"
JD_FILE = "senior_python_backend.txt"
# A CV with text but nothing to embed once blinded: its one line is an email address.
NOTHING_TO_EMBED = b"jane.doe@example.com\n"


def _rows(data_dir: str | Path, table: str, key: str, doc_id: str) -> dict:
    """The stored row of ``doc_id`` without its timestamp."""
    rows = [r for r in lancedb.connect(str(data_dir)).open_table(table).to_arrow().to_pylist() if r[key] == doc_id]
    assert len(rows) == 1, rows
    row = rows[0]
    row.pop("created_at")
    return row


def _assert_same_rows(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for column in a:
        if isinstance(a[column], list) and a[column] and isinstance(a[column][0], float):
            # Vectors: one encoder, but other processes and thread counts may round differently.
            np.testing.assert_allclose(a[column], b[column], atol=1e-6, err_msg=column)
        else:
            assert a[column] == b[column], column


def _cli_ingest(db: Path, path: Path, kind: str) -> str:
    result = CliRunner().invoke(
        cli_app, ["ingest", str(path), "--kind", kind, "--db", str(db), "--engine", "local", "--json"]
    )
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    return row["id"]


# ---------------------------------------------------------------- per-item failures


def test_a_bad_item_fails_alone_with_its_code(embedder, examples_dir: Path) -> None:
    good = (examples_dir / "cvs" / CV_FILE).read_bytes()
    corrupt = good[:400]
    documents = [RawDocument(b""), RawDocument(good, filename=CV_FILE), RawDocument(corrupt), RawDocument(NOTHING_TO_EMBED)]
    results = run_batch(documents, settings=Settings(), standardizer=make_standardizer(Settings()), embedder=embedder)

    assert [r.doc_id for r in results] == [d.doc_id for d in documents]
    assert isinstance(results[1], Processed) and results[1].record.filename == CV_FILE
    failures = {i: (r.stage, r.code) for i, r in enumerate(results) if isinstance(r, Failed)}
    assert failures == {
        0: (Stage.extract, ErrorCode.empty_document),
        2: (Stage.extract, ErrorCode.corrupt_document),
        # Nothing to embed is the document's fault, never the batch's.
        3: (Stage.embed, ErrorCode.empty_document),
    }


def test_the_cli_stores_the_good_items_of_a_batch(embedder, examples_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    ingestor = LocalIngestor(
        settings=settings, store=Store(str(tmp_path), dim=embedder.dim), standardizer=make_standardizer(settings),
        embedder=embedder,
    )
    good = [(p.name, p.read_bytes()) for p in sorted((examples_dir / "cvs").iterdir())]
    times = StageTimes()
    outcomes = ingestor.ingest([("nothing.txt", NOTHING_TO_EMBED), *good, ("empty.txt", b"")], batch_size=8, times=times)

    assert [o.file for o in outcomes if o.ok] == [name for name, _ in good]
    assert {o.file: (o.stage, o.code) for o in outcomes if not o.ok} == {
        "nothing.txt": (Stage.embed, ErrorCode.empty_document),
        "empty.txt": (Stage.extract, ErrorCode.empty_document),
    }
    assert ingestor.store.count_cvs() == len(good)
    assert set(times.seconds) == set(STEPS) and all(s > 0 for s in times.seconds.values()), times
    # Again: what is stored is skipped, what failed is tried again and fails the same way.
    again = ingestor.ingest([("nothing.txt", NOTHING_TO_EMBED), *good])
    assert [o.skipped for o in again] == [False] + [True] * len(good)
    assert again[0].code == ErrorCode.empty_document


def test_errors_cross_processes_and_map_to_http_statuses() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(ProcessingError("extract", "no_text_layer", "scanned")))
    assert (err.stage, err.code, err.message) == (Stage.extract, ErrorCode.no_text_layer, "scanned")
    assert {c: http_status(c) for c in (ErrorCode.document_too_large, ErrorCode.unsupported_document_type,
                                        ErrorCode.empty_document, ErrorCode.internal_error)} == {
        ErrorCode.document_too_large: 413, ErrorCode.unsupported_document_type: 415,
        ErrorCode.empty_document: 422, ErrorCode.internal_error: 500,
    }


# ------------------------------------------------------------------ every front end


def test_every_front_end_stores_the_same_cv(server, examples_dir: Path, tmp_path: Path) -> None:
    path = examples_dir / "cvs" / CV_FILE
    data = path.read_bytes()

    cli_id = _cli_ingest(tmp_path / "cli", path, "cv")

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / CV_FILE).write_bytes(data)
    (folder / "nothing.txt").write_bytes(NOTHING_TO_EMBED)
    (folder / "truncated.pdf").write_bytes(data[:400])
    settings = Settings(data_dir=str(tmp_path / "ray"), ray_namespace=f"t{uuid.uuid4().hex[:8]}")
    report = run_ingest([str(folder)], settings)
    assert {Path(o.file).name: o.code for o in report.outcomes} == {
        CV_FILE: None, "nothing.txt": ErrorCode.empty_document, "truncated.pdf": ErrorCode.corrupt_document,
    }

    r = server.client.post("/api/upload-cv", files={"file": (CV_FILE, data)}, data={"background_processing": "false"})
    assert r.status_code == 200 and r.json()["cv_id"] == cli_id, r.text
    r = server.client.post("/api/upload-cv", files={"file": ("nothing.txt", NOTHING_TO_EMBED)},
                           data={"background_processing": "false"})
    assert r.status_code == 422 and r.json()["detail"]["code"] == "empty_document", r.text
    assert r.json()["detail"]["stage"] == "embed"

    cli_row = _rows(tmp_path / "cli", "cvs", "cv_id", cli_id)
    _assert_same_rows(cli_row, _rows(settings.data_dir, "cvs", "cv_id", cli_id))
    _assert_same_rows(cli_row, _rows(server.data_dir, "cvs", "cv_id", cli_id))
    assert cli_row["filename"] == CV_FILE


def test_the_jd_route_stores_what_the_cli_stores(server, examples_dir: Path, tmp_path: Path) -> None:
    path = examples_dir / "jds" / JD_FILE
    cli_id = _cli_ingest(tmp_path / "cli", path, "jd")

    r = server.client.post("/api/upload-jd", json={"text": path.read_text(encoding="utf-8"), "filename": JD_FILE})
    assert r.status_code == 200 and r.json()["jd_id"] == cli_id, r.text

    _assert_same_rows(_rows(tmp_path / "cli", "jds", "jd_id", cli_id), _rows(server.data_dir, "jds", "jd_id", cli_id))
