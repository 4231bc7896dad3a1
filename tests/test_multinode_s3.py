"""Really distributed: a Ray cluster of a head and two worker nodes on this machine, the data
directory on an S3-compatible server started here (moto on loopback).

- The nodes are started without any ``AWS_*`` variable: only this process has them, so every
  worker reaches the bucket with the options the settings carry (``storage.objectstore``).
- Custom resources pin the stages (``Settings.stage_resources``): extraction runs on one
  worker node, embedding on the other, scoring on the first; where each task and actor ran is
  read back from Ray's state API.
- Bulk ingest (``run_ingest``, what ``jobs/bulk_ingest.py`` runs) reads the CVs from the
  bucket; the API's upload -> match flow runs over HTTP against Serve on the same cluster.
- A match job loses the node running its scoring task: the node's processes are frozen with
  the task in hand, then killed, and a replacement node joins. The progress actor (on the
  head) lives on untouched and the job ends with every CV scored.
- Every ranking equals the single-node one: the same files through the in-process path into
  a local folder (``LocalIngestor``, ``rank_stored``).

Run alone with ``-m multinode``; a few minutes on 2 CPUs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import ray
from ray import serve
from ray.cluster_utils import Cluster
from ray.util.state import list_actors, list_tasks
from s3_server import S3Server, s3_server
from test_api import JD_TEXT, cv_text, pdf_bytes, upload, wait_job, wait_upload

from cvmatch_ray.config import Settings
from cvmatch_ray.local_ingest import LocalIngestor
from cvmatch_ray.match.rank import job_results, rank_stored
from cvmatch_ray.pipelines.matching import create_match_job, run_plan
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.progress import ACTOR_NAME, JobStatus, get_progress_actor
from cvmatch_ray.schemas import MatchResult
from cvmatch_ray.serve.app import APP_NAME, AppArgs, build_app
from cvmatch_ray.storage.jobs import JobTable
from cvmatch_ray.storage.objectstore import AWS_ENV
from cvmatch_ray.storage.tables import Store

pytestmark = [pytest.mark.multinode, pytest.mark.slow]

BUCKET = "cvmatch-multinode"
N_BULK = 6
UPLOADED = 50  # cv_text index of the CV that comes in through the API
#: Custom resources of the worker nodes, and what each stage asks for of them.
EXTRACT, EMBED, SCORE = "extract_node", "embed_node", "score_node"
STAGE_RESOURCES = {"extract": {EXTRACT: 1.0}, "embed": {EMBED: 1.0}, "match_chunk": {SCORE: 1.0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _environ(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (``None``: unset) for the block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: Processes a node starts inherit this process's environment: started inside this, a node
#: has no AWS variable, whatever the test's own environment holds.
_NO_AWS = {variable: None for variable, _ in AWS_ENV}


@dataclass
class World:
    s3: S3Server
    cluster: Cluster
    dashboard: str
    settings: Settings
    head: Any  # ray._private.node.Node
    extract_node: Any
    embed_node: Any
    temp_dir: str

    def add_node(self, **resources: float) -> Any:
        with _environ(_NO_AWS):
            node = self.cluster.add_node(num_cpus=2, resources=resources, temp_dir=self.temp_dir)
        self.cluster.wait_for_nodes()
        return node


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """moto, then a head and two worker nodes started without AWS variables, then this
    process (the driver) given them; the session's own Ray is left and rejoined after."""
    previous = None
    if ray.is_initialized():  # the session's Ray (conftest): this module runs on its own cluster
        context = ray.get_runtime_context()
        previous = (context.gcs_address, context.namespace)
        ray.shutdown()
    temp_dir = f"/tmp/cvmn{os.getpid()}"  # short: Ray's socket paths must stay under 107 bytes
    dashboard_port = _free_port()
    with s3_server(BUCKET) as s3, _environ(_NO_AWS):
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2, "temp_dir": temp_dir,
                "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
                # Ports of our own: another Ray on this machine may hold the defaults.
                "dashboard_agent_listen_port": _free_port(), "metrics_export_port": _free_port(),
                "runtime_env_agent_port": _free_port(),
                # A dead node is declared dead within seconds, not the default half minute.
                "_system_config": {
                    "health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                    "health_check_failure_threshold": 3,
                },
            },
        )
        try:
            extract_node = cluster.add_node(num_cpus=2, resources={EXTRACT: 4, SCORE: 1}, temp_dir=temp_dir)
            embed_node = cluster.add_node(num_cpus=2, resources={EMBED: 4}, temp_dir=temp_dir)
            cluster.wait_for_nodes()
            with _environ(s3.env):
                ray.init(address=cluster.address, namespace="cvmatch", log_to_driver=False)
                # Scoring in Ray tasks however small the job (else a driver scores it alone).
                settings = Settings(
                    data_dir=s3.uri("cvmatch"), ray_namespace=f"mn{uuid.uuid4().hex[:8]}",
                    ingest_batch_size=2, stage_resources=STAGE_RESOURCES, match_task_min_cvs=0,
                )
                yield World(s3, cluster, f"http://127.0.0.1:{dashboard_port}", settings, cluster.head_node,
                            extract_node, embed_node, temp_dir)
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            if previous is not None:
                ray.init(address=previous[0], namespace=previous[1], log_to_driver=False)


@dataclass(frozen=True)
class Docs:
    cvs: dict[str, bytes]  # file name -> PDF, the bulk batch
    uploaded: bytes  # the CV sent through the API
    jd: bytes


@pytest.fixture(scope="module")
def docs() -> Docs:
    return Docs(
        cvs={f"cv{i}.pdf": pdf_bytes(cv_text(i), title=f"CV {i}") for i in range(N_BULK)},
        uploaded=pdf_bytes(cv_text(UPLOADED), title="uploaded"),
        jd=JD_TEXT.encode(),
    )


@pytest.fixture(scope="module")
def single_node(docs: Docs, embedder, tmp_path_factory) -> Store:
    """The same documents through the in-process path into a local folder: the reference."""
    folder = tmp_path_factory.mktemp("single_node")
    ingestor = LocalIngestor.from_settings(Settings(data_dir=str(folder)))
    outcomes = ingestor.ingest([*docs.cvs.items(), ("uploaded.pdf", docs.uploaded)])
    outcomes += ingestor.ingest([("jd.txt", docs.jd)], kind="jd")
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    return ingestor.store


@dataclass(frozen=True)
class Pool:
    jd_id: str
    cv_ids: list[str]
    ingest_job: str


@pytest.fixture(scope="module")
def pool(world: World, docs: Docs) -> Pool:
    """The bulk batch ingested from the bucket by the Ray Data pipeline; the JD written by
    this process (``cvmatch ingest --kind jd --engine local --db s3://...``)."""
    for name, data in docs.cvs.items():
        world.s3.put(f"inbox/cvs/{name}", data)
    report = run_ingest([world.s3.uri("inbox/cvs")], world.settings)
    assert report.status is JobStatus.succeeded
    assert not report.failed and report.stored == N_BULK, [o.error for o in report.failed]
    jd = LocalIngestor.from_settings(world.settings).ingest_one(docs.jd, kind="jd", filename="jd.txt")
    assert jd.ok, jd.error
    return Pool(jd.id, sorted(o.id for o in report.outcomes), report.job_id)


def _same_ranking(got: Sequence[MatchResult], expected: Sequence[MatchResult]) -> None:
    """Same CVs in the same order, the same skills found and missed, the same scores (the
    vectors of two encoder processes may differ in their last bits: 1e-6 of a score)."""
    assert [r.cv_id for r in got] == [r.cv_id for r in expected]
    assert [(r.matched_skills, r.missing_required, r.missing_preferred) for r in got] == [
        (r.matched_skills, r.missing_required, r.missing_preferred) for r in expected
    ]
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], abs=1e-6)


def _tasks(world: World, name: str) -> list[Any]:
    return list_tasks(address=world.dashboard, filters=[("name", "=", name)], detail=True, limit=10_000)


def _wait_for(what: str, probe, timeout: float = 30.0):
    """``probe()`` once it is truthy (Ray's state API sees events a second or so late)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.5)
    return value


def _progress_actor_state(world: World) -> Any:
    (actor,) = list_actors(
        address=world.dashboard, detail=True,
        filters=[("class_name", "=", "ProgressBookActor"), ("ray_namespace", "=", world.settings.ray_namespace)],
    )
    return actor


# ------------------------------------------------------------------------------ tests


def test_bulk_ingest_runs_each_stage_on_its_nodes_and_writes_to_the_bucket(world: World, pool: Pool) -> None:
    # Extraction ran on the node with the extract resource only, embedding on the other.
    extract_nodes = _wait_for("the extract tasks", lambda: {
        t.node_id for t in list_tasks(address=world.dashboard, detail=True, limit=10_000)
        if "extract_stage" in t.name and t.state == "FINISHED"
    })
    assert extract_nodes == {world.extract_node.node_id}
    embedders = [a for a in list_actors(address=world.dashboard, detail=True, limit=10_000) if "EmbedStage" in a.class_name]
    assert embedders and {a.node_id for a in embedders} == {world.embed_node.node_id}
    # The worker nodes have no AWS variable: what reached the bucket there came with the settings.
    aws_of_node = ray.remote(num_cpus=0, resources={EMBED: 0.01})(lambda: [v for v, _ in AWS_ENV if v in os.environ])
    assert ray.get(aws_of_node.remote()) == []
    # The progress actor is on the head, whichever node asked for it first.
    assert _progress_actor_state(world).node_id == world.head.node_id

    # The progress book writes its jobs through to the bucket (what a restarted actor reloads).
    options = world.settings.store.storage_options
    _wait_for("the ingest job in the bucket's jobs table",  # a fresh reader each time: the latest version
              lambda: JobTable(world.settings.data_dir, storage_options=options).find(pool.ingest_job))
    prefix = "cvmatch/"
    keys = world.s3.keys(prefix)
    for table in ("cvs", "jds", "jobs"):
        assert any(k.startswith(f"{prefix}{table}.lance/data/") for k in keys), table
    assert any(k.startswith(f"{prefix}cvs.lance/_indices/") for k in keys)  # the full-text index
    store = Store.open(world.settings.tenant_dir, world.settings.store)
    assert store.list_cv_ids() == pool.cv_ids and store.has_jd(pool.jd_id)
    progress = get_progress_actor(world.settings)
    assert ray.get(progress.get.remote(pool.ingest_job)).status is JobStatus.succeeded


@pytest.fixture(scope="module")
def api(world: World, pool: Pool) -> Iterator[httpx.Client]:
    """The Serve app on the cluster, its one HTTP proxy on the head (the nodes share a host)."""
    port = _free_port()
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    args = AppArgs(data_dir=world.settings.data_dir, ray_namespace=world.settings.ray_namespace,
                   match_task_min_cvs=0, upload={"recover_every_s": 0})
    serve.run(build_app(args), name=APP_NAME, route_prefix="/")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    try:
        yield client
    finally:
        client.close()
        serve.shutdown()


def test_the_api_uploads_and_matches_on_s3(world: World, pool: Pool, api: httpx.Client, single_node: Store,
                                           docs: Docs) -> None:
    r = upload(api, docs.uploaded, "uploaded.pdf")
    assert r.status_code == 202, r.text
    cv_id = r.json()["cv_id"]
    final, _ = wait_upload(api, cv_id, timeout=180)
    assert (final["status"], final["step"]) == ("succeeded", "done"), final
    # The accepted upload's blob (its record and bytes) is in the bucket.
    assert world.s3.keys(f"cvmatch/blobs/upload/{cv_id[:2]}/{cv_id}")

    r = api.post("/api/match", json={"jd_id": pool.jd_id, "chunk_size": 2})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    final, _ = wait_job(api, job_id, timeout=180)
    assert (final["status"], final["processed"], final["failed"]) == ("succeeded", N_BULK + 1, 0), final
    assert world.s3.keys(f"cvmatch/blobs/job/{job_id[:2]}/{job_id}")  # the job's plan, for its driver
    results = api.get(f"/api/match-results/{job_id}").json()
    assert results["complete"] and results["count"] == N_BULK + 1
    got = [MatchResult.model_validate(x) for x in results["results"]]
    _same_ranking(got, rank_stored(single_node, pool.jd_id))
    # Whole-pool matching (in-memory prescore, full-text index on the bucket) ranks the same.
    best = api.get(f"/api/jds/{pool.jd_id}/best-cvs", params={"top_k": N_BULK + 1}).json()
    assert [x["cv_id"] for x in best["results"]] == [x.cv_id for x in got]


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc (Linux, as the test machine)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # the name may hold spaces
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _freeze(node: Any) -> list[int]:
    """SIGSTOP a node's raylet and every process it started (workers, agents): a node that
    stopped answering, with whatever task it held still in hand."""
    pids = _process_tree(node.all_processes["raylet"][0].process.pid)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def test_a_match_job_outlives_the_node_running_it(world: World, pool: Pool, single_node: Store) -> None:
    settings = world.settings
    progress = get_progress_actor(settings)
    actor_before = _progress_actor_state(world)
    # One scoring task at a time, each on the extract node (the one node with the score
    # resource), four tasks in all, each reported before the next is sent.
    plan = create_match_job(settings, jd_id=pool.jd_id, cv_ids=pool.cv_ids, chunk_size=1)
    outcome: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault("status", run_plan(settings, plan, parallelism=1)), daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 120
    while ray.get(progress.get.remote(plan.job_id)).current_chunk == 0:
        assert time.monotonic() < deadline and runner.is_alive(), "the job never reported a chunk"
        time.sleep(0.005)
    frozen = _freeze(world.extract_node)
    mid = ray.get(progress.get.remote(plan.job_id))
    # Mid-job: chunks done, others held by (or waiting for) the frozen node.
    assert mid.status is JobStatus.running and 0 < mid.current_chunk < plan.total_chunks, mid
    time.sleep(2)
    assert ray.get(progress.get.remote(plan.job_id)).current_chunk == mid.current_chunk  # it cannot move

    # The node dies (its processes killed, as a lost machine's are) and a replacement joins.
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    world.cluster.remove_node(world.extract_node, allow_graceful=False)
    replacement = world.add_node(**{SCORE: 1})
    runner.join(timeout=180)
    assert not runner.is_alive(), "the job did not end after the node was replaced"

    assert outcome["status"] is JobStatus.succeeded
    job = ray.get(progress.get.remote(plan.job_id))
    assert (job.status, job.processed, job.failed, job.current_chunk) == (
        JobStatus.succeeded, N_BULK, 0, plan.total_chunks)
    # The progress actor never moved nor restarted: it is the same actor, on the head.
    actor_after = _progress_actor_state(world)
    assert (actor_after.actor_id, actor_after.node_id, actor_after.num_restarts) == (
        actor_before.actor_id, world.head.node_id, 0)
    assert ray.get_actor(ACTOR_NAME, namespace=settings.ray_namespace)._actor_id.hex() == actor_before.actor_id

    # Scoring ran on the lost node before, and on its replacement after (this job's tasks
    # are the ones that asked for the score resource: the API's jobs run without it).
    expected = {world.extract_node.node_id, replacement.node_id}

    def scored_on() -> set[str] | None:
        tasks = _tasks(world, "score_chunks")
        nodes = {t.node_id for t in tasks if SCORE in t.required_resources and t.state == "FINISHED"}
        return nodes if nodes >= expected else None

    assert _wait_for("scoring tasks on both nodes", scored_on) == expected

    store = Store.open(settings.tenant_dir, settings.store)
    _same_ranking(job_results(store, plan.job_id), rank_stored(single_node, pool.jd_id, pool.cv_ids))
    assert world.s3.keys("cvmatch/matches.lance/data/")
