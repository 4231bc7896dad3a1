"""The data directory on an S3-compatible server: the options that reach it (one derivation
for LanceDB and pyarrow), and the tables, blobs, tenants, jobs table and erasure working there.

The server is moto in server mode on loopback (``s3_server``); no Ray here (the cluster runs
in ``test_multinode_s3.py``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pyarrow.fs as pafs
import pytest
from s3_server import REGION, S3Server, s3_server
from test_store import DIM, _cv, _jd, _rows

from cvmatch_ray.config import Settings, StoreSettings
from cvmatch_ray.ids import document_id
from cvmatch_ray.storage.blobs import BlobStore
from cvmatch_ray.storage.jobs import JobTable
from cvmatch_ray.storage.objectstore import AWS_ENV, ObjectStoreError, filesystem, lance_options, options_from_env
from cvmatch_ray.storage.tables import Store
from cvmatch_ray.storage.tenants import list_tenants

# ------------------------------------------------------------------ the options, pure


def test_the_aws_variables_become_storage_options() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_SESSION_TOKEN": "",
        "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "http://general:9000", "AWS_ENDPOINT_URL_S3": "http://s3only:9000",
        "HOME": "/root",
    }
    assert options_from_env(env) == {
        "aws_access_key_id": "id", "aws_secret_access_key": "secret",
        # As in the AWS SDKs: AWS_REGION over AWS_DEFAULT_REGION, the S3 endpoint over the general one.
        "aws_region": "eu-west-3", "aws_endpoint": "http://s3only:9000",
    }
    assert options_from_env({"AWS_DEFAULT_REGION": "eu-west-1"}) == {"aws_region": "eu-west-1"}
    assert options_from_env({}) == {}


def _clear_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS variable of the machine's own leaks into a test that counts them."""
    for variable, _ in AWS_ENV:
        monkeypatch.delenv(variable, raising=False)


def test_settings_carry_the_aws_variables_under_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_aws(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    monkeypatch.setenv("CVMATCH_STORE__STORAGE_OPTIONS", '{"aws_region": "us-east-2", "timeout": "60s"}')
    monkeypatch.setenv("CVMATCH_STORE__COMPACT_EVERY", "7")
    settings = Settings()
    assert settings.store.compact_every == 7
    # A CVMATCH_ key wins over the AWS variable that fills the same key; the rest are merged.
    assert settings.store.storage_options == {
        "aws_endpoint": "http://127.0.0.1:9000", "aws_region": "us-east-2", "timeout": "60s",
    }
    # Settings travel to Ray workers pickled: the options go with them.
    assert Settings.model_validate(settings.model_dump()).store.storage_options == settings.store.storage_options
    # Store settings given whole in code are taken as they are.
    assert Settings(store=StoreSettings()).store.storage_options == {}


def test_lance_gets_the_options_of_object_stores_only() -> None:
    http = {"aws_endpoint": "http://127.0.0.1:9000", "aws_region": REGION}
    assert lance_options("/data/cvmatch", http) is None
    assert lance_options("file:///data/cvmatch", http) is None
    assert lance_options("s3://bucket/cv", {}) is None
    # Plain HTTP must be allowed explicitly: object_store refuses it otherwise.
    assert lance_options("s3://bucket/cv", http) == {**http, "allow_http": "true"}
    assert lance_options("s3://bucket/cv", {**http, "allow_http": "false"})["allow_http"] == "false"
    https = {"aws_endpoint": "https://minio.internal:9000"}
    assert lance_options("s3://bucket/cv", https) == https


def test_pyarrow_gets_the_same_endpoint_and_credentials(tmp_path) -> None:
    fs, path = filesystem(str(tmp_path / "db"))
    assert isinstance(fs, pafs.LocalFileSystem) and path == str(tmp_path / "db")
    fs, path = filesystem(
        "s3://bucket/cv/", {"aws_endpoint": "http://127.0.0.1:9000", "aws_region": "eu-west-3",
                            "aws_access_key_id": "id", "aws_secret_access_key": "secret"},
    )
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/cv"
    # What the filesystem pickles as is what it was built with (Ray Data's read tasks get it so).
    built = fs.__reduce__()[1][0]
    assert (built["endpoint_override"], built["scheme"], built["region"]) == ("127.0.0.1:9000", "http", "eu-west-3")
    assert (built["access_key"], built["secret_key"]) == ("id", "secret")
    with pytest.raises(ObjectStoreError, match="http:// or https://"):
        filesystem("s3://bucket/cv", {"aws_endpoint": "127.0.0.1:9000"})
    with pytest.raises(ObjectStoreError, match="both"):
        filesystem("s3://bucket/cv", {"aws_access_key_id": "id"})


# ------------------------------------------------------------------- on the server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server("cvmatch-objectstore") as server:
        yield server


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def _holding(s3: S3Server, prefix: str, needle: bytes) -> list[str]:
    """The keys under ``prefix`` whose bytes hold ``needle`` (read back with boto3)."""
    return [key for key in s3.keys(prefix) if needle in s3.read(key)]


def test_a_store_on_s3_reads_searches_and_erases_every_byte(s3: S3Server) -> None:
    prefix = _prefix()
    store = Store(s3.uri(prefix), dim=DIM, storage_options=s3.options, erase_grace=timedelta(0))
    word = f"zq{uuid.uuid4().hex[:10]}canary"
    canary = _cv(9, text=f"Python developer {word}")
    others = [_cv(i) for i in range(5)]
    store.upsert_cvs(others)
    store.upsert_cvs([canary])
    store.upsert_cvs([canary])  # the first row superseded: in an old version, not gone
    store.upsert_jds([_jd(1)])
    job_id = "job_" + uuid.uuid4().hex[:16]
    store.write_match_rows(job_id, _rows(_jd(1).jd_id, [(c.cv_id, 50.0) for c in [*others, canary]]))
    store.ensure_search_indexes(ann_min_rows=10**9)
    # A failed commit's file: referenced by no version, removed by the erasure all the same.
    junk = f"{prefix}/cvs.lance/data/junk-{uuid.uuid4().hex}.lance"
    s3.put(junk, word.encode())

    reopened = Store(s3.uri(prefix), storage_options=s3.options)
    assert reopened.dim == DIM and reopened.count_cvs() == 6
    assert reopened.get_cv(canary.cv_id).text == canary.text
    assert [cv_id for cv_id, _ in reopened.search_cvs_text(word, limit=10)] == [canary.cv_id]
    assert any(k.startswith(f"{prefix}/cvs.lance/data/") for k in _holding(s3, prefix, word.encode()))

    assert store.delete_cv(canary.cv_id)

    assert _holding(s3, prefix, word.encode()) == []
    assert junk not in s3.keys(prefix)
    assert reopened.get_cv(canary.cv_id) is None and reopened.count_cvs() == 5
    assert reopened.search_cvs_text(word, limit=10) == []
    assert reopened.count_matches(job_id) == 5


def test_concurrent_writers_on_s3_lose_no_commit(s3: S3Server) -> None:
    # Lance commits a version with a conditional PUT (If-None-Match): of two writers that
    # raced for a version, one retries on top of the other instead of overwriting it.
    uri = s3.uri(_prefix())
    Store(uri, dim=DIM, storage_options=s3.options).upsert_cvs([_cv(0)])
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        store = Store(uri, storage_options=s3.options, compact_every=None)  # a connection of its own
        try:
            for k in range(4):
                store.upsert_cvs([_cv(1 + worker * 4 + k)])
        except BaseException as e:  # handed to the test thread
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Store(uri, storage_options=s3.options).list_cv_ids() == sorted(_cv(i).cv_id for i in range(13))


def test_blobs_tenants_and_jobs_on_s3(s3: S3Server) -> None:
    prefix = _prefix()
    blobs = BlobStore(s3.uri(prefix), s3.options)
    upload_id = document_id(b"a CV")
    assert blobs.get("upload", upload_id) is None
    assert blobs.create("upload", upload_id, b"a CV") and not blobs.create("upload", upload_id, b"other")
    blobs.put("job", "job_0123456789abcdef", b"{}")
    assert blobs.get("upload", upload_id) == b"a CV" and blobs.get("upload", upload_id, limit=1) == b"a"
    assert blobs.ids("upload") == [upload_id] and blobs.exists("job", "job_0123456789abcdef")
    assert s3.keys(f"{prefix}/blobs/") == [
        f"{prefix}/blobs/job/jo/job_0123456789abcdef", f"{prefix}/blobs/upload/{upload_id[:2]}/{upload_id}",
    ]
    assert blobs.delete("upload", upload_id) and not blobs.delete("upload", upload_id)

    assert list_tenants(s3.uri(prefix), s3.options) == ["default"]
    # A tenant is a prefix on an object store: it is listed once it holds something.
    BlobStore(f"{s3.uri(prefix)}/tenants/acme", s3.options).put("jd", document_id(b"a JD"), b"a JD")
    s3.put(f"{prefix}/tenants/Not A Tenant/x", b"")
    assert list_tenants(s3.uri(prefix), s3.options) == ["default", "acme"]

    jobs = JobTable(s3.uri(prefix), storage_options=s3.options, erase_grace=timedelta(0))
    jobs.upsert([{"job_id": "j1", "kind": "match", "jd_id": None, "status": "running", "updated_at": None,
                  "state_json": '{"secret": "job-canary"}'}])
    assert JobTable(s3.uri(prefix), storage_options=s3.options).find("j1") == '{"secret": "job-canary"}'
    assert _holding(s3, f"{prefix}/jobs.lance", b"job-canary")
    jobs.delete(["j1"])
    jobs.erase_deleted()
    assert _holding(s3, f"{prefix}/jobs.lance", b"job-canary") == []


def test_settings_from_the_aws_variables_reach_the_server(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_aws(monkeypatch)
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(data_dir=s3.uri(_prefix()), tenant="acme")
    store = Store.open(settings.tenant_dir, settings.store, dim=DIM)
    store.upsert_jds([_jd(2)])
    BlobStore(settings.tenant_dir, settings.store.storage_options).put("jd", _jd(2).jd_id, b"raw JD")
    prefix = settings.tenant_dir.removeprefix(f"s3://{s3.bucket}/")
    keys = s3.keys(prefix)
    assert f"{prefix}/blobs/jd/{_jd(2).jd_id[:2]}/{_jd(2).jd_id}" in keys
    assert any(k.startswith(f"{prefix}/jds.lance/data/") for k in keys)
    assert list_tenants(settings.data_dir, settings.store.storage_options) == ["default", "acme"]
