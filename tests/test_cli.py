"""The cvmatch CLI on the example documents: the README's main job and the JSON contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hostile_docs import inflating_docx
from typer.testing import CliRunner

from cvmatch_ray.cli import app

runner = CliRunner()
RESULT_KEYS = {"cv_id", "file", "score", "breakdown", "matched_skills", "missing_required", "missing_preferred"}


def _json(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("clidb"))


def test_rank_puts_the_cv_written_for_the_job_first(examples_dir: Path, db: str):
    jd = examples_dir / "jds" / "senior_python_backend.txt"
    rows = _json(runner.invoke(app, ["rank", "--jd", str(jd), "--cvs", str(examples_dir / "cvs"), "--db", db, "--json"]))
    assert Path(rows[0]["file"]).name == "amelie_dubois_backend.pdf"
    assert len(rows) == len(list((examples_dir / "cvs").iterdir()))
    for row in rows:
        assert RESULT_KEYS <= row.keys()
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert "Python" in rows[0]["matched_skills"]


def test_rank_is_the_same_every_time(examples_dir: Path, db: str):
    args = ["rank", "--jd", str(examples_dir / "jds" / "senior_python_backend.txt"), "--cvs", str(examples_dir / "cvs"), "--db", db, "--json"]
    assert _json(runner.invoke(app, args)) == _json(runner.invoke(app, args))


def test_accountant_jd_prefers_the_accountant(examples_dir: Path, db: str):
    jd = examples_dir / "jds" / "staff_accountant.md"
    if not jd.exists():
        pytest.skip("no accountant JD in examples/")
    rows = _json(runner.invoke(app, ["rank", "--jd", str(jd), "--cvs", str(examples_dir / "cvs"), "--db", db, "--json"]))
    assert Path(rows[0]["file"]).name == "jose_garcia_accountant.txt"


def test_bad_files_appear_with_an_error_and_do_not_stop_the_rest(examples_dir: Path, tmp_path: Path):
    folder = tmp_path / "cvs"
    folder.mkdir()
    (folder / "good.txt").write_bytes((examples_dir / "cvs" / "jose_garcia_accountant.txt").read_bytes())
    for bad in (examples_dir / "bad").iterdir():
        (folder / bad.name).write_bytes(bad.read_bytes())
    rows = _json(
        runner.invoke(app, ["rank", "--jd", str(examples_dir / "jds" / "senior_python_backend.txt"), "--cvs", str(folder), "--db", str(tmp_path / "db"), "--json"])
    )
    assert [Path(r["file"]).name for r in rows if "error" not in r] == ["good.txt"]
    errors = {Path(r["file"]).name: r["error"] for r in rows if "error" in r}
    assert set(errors) == {p.name for p in (examples_dir / "bad").iterdir()}
    assert all(e.startswith("extract: ") for e in errors.values())


def test_ingest_is_idempotent_and_match_reads_the_store(examples_dir: Path, tmp_path: Path):
    db = str(tmp_path / "db")
    first = _json(runner.invoke(app, ["ingest", str(examples_dir / "cvs"), "--db", db, "--json"]))
    again = _json(runner.invoke(app, ["ingest", str(examples_dir / "cvs"), "--db", db, "--json"]))
    assert [r["id"] for r in first] == [r["id"] for r in again]
    [jd] = _json(runner.invoke(app, ["ingest", str(examples_dir / "jds" / "senior_python_backend.txt"), "--kind", "jd", "--db", db, "--json"]))
    rows = _json(runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db, "--json", "--top", "3"]))
    assert len(rows) == 3 and RESULT_KEYS <= rows[0].keys()
    assert Path(rows[0]["file"]).name == "amelie_dubois_backend.pdf"
    # --top ranks the whole pool from memory and scores only the best: the same rows as
    # scoring every stored CV.
    everyone = _json(runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db, "--json"]))
    assert rows == everyone[:3]
    one = _json(runner.invoke(app, ["match", "--jd-id", jd["id"], "--cv-id", first[1]["id"], "--cv-id", "f" * 32, "--db", db, "--json"]))
    assert one[0]["cv_id"] == first[1]["id"] and one[1] == {"cv_id": "f" * 32, "file": None, "error": "no stored CV with this id"}


def test_tenant_reads_and_writes_its_own_data_only(examples_dir: Path, tmp_path: Path):
    db = str(tmp_path / "db")
    cvs = examples_dir / "cvs"
    jd_file = str(examples_dir / "jds" / "senior_python_backend.txt")
    acme = _json(runner.invoke(app, ["ingest", str(cvs / "amelie_dubois_backend.pdf"), str(cvs / "chen_wei_devops.md"),
                                     "--db", db, "--tenant", "acme", "--engine", "local", "--json"]))
    home = _json(runner.invoke(app, ["ingest", str(cvs / "amelie_dubois_backend.pdf"), "--db", db, "--engine", "local", "--json"]))
    assert (tmp_path / "db" / "tenants" / "acme").is_dir()
    [jd] = _json(runner.invoke(app, ["ingest", jd_file, "--kind", "jd", "--db", db, "--tenant", "acme", "--engine", "local", "--json"]))
    rows = _json(runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db, "--tenant", "acme", "--engine", "local", "--json"]))
    assert {r["cv_id"] for r in rows} == {r["id"] for r in acme}
    # The default tenant (no --tenant) has the same CV bytes but not acme's JD nor its other CV.
    result = runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db])
    assert result.exit_code == 2 and "no JD" in result.output
    [jd_home] = _json(runner.invoke(app, ["ingest", jd_file, "--kind", "jd", "--db", db, "--engine", "local", "--json"]))
    rows = _json(runner.invoke(app, ["match", "--jd-id", jd_home["id"], "--db", db, "--engine", "local", "--json"]))
    assert [r["cv_id"] for r in rows] == [home[0]["id"]]
    # Another tenant sees nothing at all; a name that could be a path is refused.
    result = runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db, "--tenant", "beta"])
    assert result.exit_code == 2 and "no JD" in result.output
    result = runner.invoke(app, ["match", "--jd-id", jd["id"], "--db", db, "--tenant", "../acme"])
    assert result.exit_code == 2 and "invalid tenant name" in result.output


def test_unknown_jd_is_a_usage_error(tmp_path: Path):
    result = runner.invoke(app, ["match", "--jd-id", "0" * 32, "--db", str(tmp_path / "db")])
    assert result.exit_code == 2
    assert "no JD" in result.output


def test_errors_are_printed_as_text_not_markup(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    # A message with "[...]" in it (a config line, a file name) is printed as it is: an
    # unbalanced "[/x]" used to crash the error printer itself.
    from cvmatch_ray.cli import _fail

    assert _fail("bind failed [/etc/haproxy.cfg:45]").exit_code == 2
    assert "bind failed [/etc/haproxy.cfg:45]" in capsys.readouterr().err
    bad = tmp_path / "[bold]cv.txt"
    bad.write_bytes(b"")
    result = runner.invoke(app, ["parse", str(bad)])
    assert result.exit_code == 1
    assert "[bold]cv.txt" in result.output.replace("\n", "")


def test_a_zip_bomb_docx_is_a_per_item_error(examples_dir: Path, tmp_path: Path):
    folder = tmp_path / "cvs"
    folder.mkdir()
    (folder / "bomb.docx").write_bytes(inflating_docx(12 * 1024 * 1024))
    (folder / "good.txt").write_bytes((examples_dir / "cvs" / "jose_garcia_accountant.txt").read_bytes())
    rows = _json(runner.invoke(app, ["ingest", str(folder), "--db", str(tmp_path / "db"), "--engine", "local", "--json"]))
    by_name = {Path(r["file"]).name: r for r in rows}
    assert by_name["bomb.docx"]["code"] == "document_too_complex" and by_name["bomb.docx"]["stage"] == "extract"
    assert "id" in by_name["good.txt"]


def test_parse_json_contract(examples_dir: Path):
    files = [examples_dir / "cvs" / "jonas_muller_data.docx", examples_dir / "bad" / "encrypted.pdf"]
    rows = _json(runner.invoke(app, ["parse", *map(str, files), "--json"]))
    assert rows[0]["file"].endswith("jonas_muller_data.docx") and "profile" in rows[0]
    assert rows[0]["profile"]["contact"]["name"] == "Jonas Müller"
    assert "error" in rows[1] and "encrypt" in rows[1]["error"].lower()


def test_every_input_failing_exits_1(examples_dir: Path):
    result = runner.invoke(app, ["parse", str(examples_dir / "bad" / "empty.txt"), "--json"])
    assert result.exit_code == 1


def test_rank_on_ray_gives_the_same_ranking_as_in_process(ray_cluster, examples_dir: Path, tmp_path: Path, monkeypatch):
    # Its own namespace: the progress actor is bound to one store.
    monkeypatch.setenv("CVMATCH_RAY_NAMESPACE", f"cli-{tmp_path.name}")
    jd = str(examples_dir / "jds" / "senior_python_backend.txt")
    common = ["rank", "--jd", jd, "--cvs", str(examples_dir / "cvs"), "--json"]
    on_ray = _json(runner.invoke(app, [*common, "--db", str(tmp_path / "ray"), "--engine", "ray"]))
    local = _json(runner.invoke(app, [*common, "--db", str(tmp_path / "local"), "--engine", "local"]))
    assert on_ray == local


def test_rank_jobs_gives_the_same_score_as_rank_for_the_same_pair(examples_dir: Path, db: str):
    cv = examples_dir / "cvs" / "jose_garcia_accountant.txt"
    jobs = _json(runner.invoke(app, ["rank-jobs", "--cv", str(cv), "--jds", str(examples_dir / "jds"), "--db", db, "--json"]))
    assert Path(jobs[0]["file"]).name == "staff_accountant.md"
    for job in jobs:
        forward = _json(runner.invoke(app, ["rank", "--jd", job["file"], "--cvs", str(cv), "--db", db, "--json"]))
        assert forward[0]["score"] == job["score"] and forward[0]["breakdown"] == job["breakdown"]


def test_rank_on_ray_keeps_ray_logs_off_the_console(ray_cluster, examples_dir: Path, tmp_path: Path):
    # A real `cvmatch rank --engine ray --json` with stderr a pipe (as under cron or CI): the
    # JSON alone on stdout, and none of Ray Data's every-10-s progress log or Ray's start-up
    # lines on stderr.
    env = {
        **os.environ, "CVMATCH_RAY_ADDRESS": ray_cluster.address,
        "CVMATCH_RAY_NAMESPACE": f"cli-quiet-{tmp_path.name}",
    }
    jd = str(examples_dir / "jds" / "senior_python_backend.txt")
    proc = subprocess.run(
        [sys.executable, "-m", "cvmatch_ray.cli", "rank", "--jd", jd, "--cvs", str(examples_dir / "cvs"),
         "--db", str(tmp_path / "db"), "--engine", "ray", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) >= 3
    # Ray core's own C++ warning about Ray Data's actor pools (ray-project/ray#53727) is
    # written by the driver's core worker straight to fd 2, past Python's logging.
    noise = [line for line in proc.stderr.splitlines() if line.strip() and "core_worker.cc" not in line]
    assert noise == [], "\n".join(noise)
