"""Tenants over real HTTP: each API key's tenant sees its own CVs, JDs, uploads and jobs only.

One Serve app (keys of three tenants, ``SERVER_ARGS``) on the session's shared Ray; the last
test redeploys it with keys in the list form (every key the default tenant's).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import API_TIMEOUT, Server
from ray import serve
from test_api import JD_TEXT, cv_text, pdf_bytes, wait_job, wait_upload

from cvmatch_ray.config import StoreSettings, tenant_data_dir
from cvmatch_ray.serve.app import APP_NAME, build_app
from cvmatch_ray.storage.tables import Store

pytestmark = pytest.mark.slow

KEYS = {"k-acme": "acme", "k-beta": "beta", "k-home": "default"}
SERVER_ARGS = {"api_keys": KEYS}

#: The same file, sent by both tenants.
SHARED = pdf_bytes(cv_text(1), title="shared")
#: Files only one tenant sends.
ACME_ONLY = [pdf_bytes(cv_text(i), title=f"acme{i}") for i in (2, 3)]
BETA_ONLY = [pdf_bytes(cv_text(4), title="beta4")]
#: A JD only acme has.
ACME_JD = "Data Scientist\n\nRequirements:\n- Python and Machine Learning\n- 3+ years of experience\n"


def _client(server: Server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=API_TIMEOUT, headers={"X-API-Key": key})


@pytest.fixture(scope="module")
def acme(server: Server) -> Iterator[httpx.Client]:
    with _client(server, "k-acme") as c:
        yield c


@pytest.fixture(scope="module")
def beta(server: Server) -> Iterator[httpx.Client]:
    with _client(server, "k-beta") as c:
        yield c


def _store(server: Server, tenant: str) -> Store:
    return Store.open(tenant_data_dir(str(server.data_dir), tenant), StoreSettings())


def _stored_cv(client: httpx.Client, data: bytes) -> str:
    r = client.post("/api/upload-cv", files={"file": ("cv.pdf", data, "application/pdf")})
    assert r.status_code in (200, 202), r.text
    body, _ = wait_upload(client, r.json()["cv_id"])
    assert body["step"] == "done", body
    return body["cv_id"]


@pytest.fixture(scope="module")
def pools(acme: httpx.Client, beta: httpx.Client) -> dict[str, set[str]]:
    """Each tenant's stored CVs: the shared file, and files of its own."""
    return {
        "acme": {_stored_cv(acme, d) for d in [SHARED, *ACME_ONLY]},
        "beta": {_stored_cv(beta, d) for d in [SHARED, *BETA_ONLY]},
    }


@pytest.fixture(scope="module")
def jd_id(acme: httpx.Client, beta: httpx.Client) -> str:
    """The same JD text, uploaded by both tenants (the same id, two JDs)."""
    ids = set()
    for c in (acme, beta):
        r = c.post("/api/upload-jd", json={"text": JD_TEXT})
        assert r.status_code == 200 and r.json()["duplicate"] is False, r.text
        ids.add(r.json()["jd_id"])
    [one] = ids
    return one


def test_the_same_bytes_from_two_tenants_are_two_cvs(
    server: Server, acme: httpx.Client, beta: httpx.Client, pools: dict[str, set[str]]
) -> None:
    shared = next(iter(pools["acme"] & pools["beta"]))  # same bytes, same id, in both pools
    # Each tenant's own row, in its own tables: the default tenant's (the data dir itself)
    # has none of them.
    assert _store(server, "acme").has_cv(shared) and _store(server, "beta").has_cv(shared)
    assert not _store(server, "default").has_cv(shared)
    assert (server.data_dir / "tenants" / "acme").is_dir()
    for c in (acme, beta):
        assert c.get(f"/api/cvs/{shared}").status_code == 200
        assert c.get(f"/api/cv-upload-progress/{shared}").json()["step"] == "done"
    # Sent again by beta: a duplicate of beta's own CV, whatever acme does with its copy.
    r = beta.post("/api/upload-cv", files={"file": ("cv.pdf", SHARED, "application/pdf")})
    assert r.status_code == 200 and r.json()["duplicate"] is True

    # One tenant's delete removes its CV only.
    assert acme.delete(f"/api/cvs/{shared}").status_code == 200
    assert acme.get(f"/api/cvs/{shared}").status_code == 404
    assert acme.get(f"/api/cv-upload-progress/{shared}").status_code == 404
    assert beta.get(f"/api/cvs/{shared}").status_code == 200
    assert beta.get(f"/api/cv-upload-progress/{shared}").json()["step"] == "done"
    # acme takes it back: a new upload of acme's, processed again.
    pools["acme"].add(_stored_cv(acme, SHARED))


def test_another_tenants_cv_is_404_everywhere(acme: httpx.Client, beta: httpx.Client, pools: dict[str, set[str]]) -> None:
    for cv_id in pools["acme"] - pools["beta"]:
        assert beta.get(f"/api/cvs/{cv_id}").status_code == 404
        assert beta.get(f"/api/cv-upload-progress/{cv_id}").status_code == 404
        assert beta.post("/api/match-jobs", json={"cv_id": cv_id}).status_code == 404
        assert beta.delete(f"/api/cvs/{cv_id}").status_code == 404
        assert acme.get(f"/api/cvs/{cv_id}").status_code == 200  # beta's delete touched nothing


def test_whole_pool_matching_sees_the_callers_cvs_only(
    acme: httpx.Client, beta: httpx.Client, pools: dict[str, set[str]], jd_id: str
) -> None:
    for tenant, c in (("acme", acme), ("beta", beta)):
        r = c.get(f"/api/jds/{jd_id}/best-cvs", params={"top_k": 100})
        assert r.status_code == 200, r.text
        assert {row["cv_id"] for row in r.json()["results"]} == pools[tenant]

        r = c.post("/api/match", json={"jd_id": jd_id})  # no cv_ids: every CV of the caller's
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        body, _ = wait_job(c, job_id)
        assert body["status"] == "succeeded" and body["total"] == len(pools[tenant])
        results = c.get(f"/api/match-results/{job_id}").json()["results"]
        assert {row["cv_id"] for row in results} == pools[tenant]
        # The JD's latest job, by JD id: the caller's own.
        assert c.get(f"/api/matching-progress/{jd_id}").json()["job_id"] == job_id


def test_another_tenants_jd_and_jobs_are_404(acme: httpx.Client, beta: httpx.Client, pools: dict[str, set[str]]) -> None:
    r = acme.post("/api/upload-jd", json={"text": ACME_JD})
    assert r.status_code == 200, r.text
    acme_jd = r.json()["jd_id"]
    for path in (f"/api/jds/{acme_jd}", f"/api/jds/{acme_jd}/best-cvs", f"/api/matching-progress/{acme_jd}"):
        assert beta.get(path).status_code == 404, path
    assert beta.post("/api/match", json={"jd_id": acme_jd}).status_code == 404

    r = acme.post("/api/match", json={"jd_id": acme_jd, "chunk_size": 1})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert beta.get(f"/api/matching-progress/{job_id}").status_code == 404
    assert beta.get(f"/api/match-results/{job_id}").status_code == 404
    assert beta.post(f"/api/match/{job_id}/cancel").status_code == 404
    body, _ = wait_job(acme, job_id)
    assert body["status"] == "succeeded"  # beta's cancel did not reach it
    assert {row["cv_id"] for row in acme.get(f"/api/match-results/{job_id}").json()["results"]} == pools["acme"]

    # Reverse matching over every stored JD: beta's CV sees beta's JDs only.
    [beta_cv] = pools["beta"] - pools["acme"]
    r = beta.post("/api/match-jobs", json={"cv_id": beta_cv})
    assert r.status_code == 200, r.text
    assert acme_jd not in {row["jd_id"] for row in r.json()["results"]}
    r = acme.post("/api/match-jobs", json={"cv_id": next(iter(pools["acme"]))})
    assert acme_jd in {row["jd_id"] for row in r.json()["results"]}


def test_list_form_keys_are_the_default_tenant(server: Server) -> None:
    """Last: redeploys the app with keys in the list form."""
    with _client(server, "k-home") as home:
        home_cv = _stored_cv(home, pdf_bytes(cv_text(5), title="home"))
    assert _store(server, "default").has_cv(home_cv)  # the data dir itself
    serve.run(build_app(server.args(api_keys=["k-list"])), name=APP_NAME, route_prefix="/")
    with _client(server, "k-list") as c:
        assert c.get(f"/api/cvs/{home_cv}").status_code == 200
        shared = pdf_bytes(cv_text(1), title="shared")
        r = c.post("/api/upload-cv", files={"file": ("cv.pdf", shared, "application/pdf")})
        assert r.status_code == 202 and r.json()["duplicate"] is False  # acme's and beta's are not the default's
        assert wait_upload(c, r.json()["cv_id"])[0]["step"] == "done"
    with _client(server, "k-acme") as c:
        assert c.get(f"/api/cvs/{home_cv}").status_code == 401  # a key no longer configured
