"""The vLLM standardizer inside Ray: the Ray Data batch stage (an engine per actor)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from llm_fixtures import require, tiny_model_dir  # noqa: F401  (pytest fixture)

from cvmatch_ray.config import LLMSettings, Settings
from cvmatch_ray.pipelines.ray_ingest import run_ingest
from cvmatch_ray.pipelines.resources import stage_options
from cvmatch_ray.process import Extracted, Standardized
from cvmatch_ray.progress import JobStatus
from cvmatch_ray.schemas import CVProfile
from cvmatch_ray.storage.tables import Store

CV = """{name}
Backend Engineer
{user}@example.com | +44 20 7946 0{n:03d}

Skills
Python, Docker, PostgreSQL, Kubernetes

Experience
Backend Engineer, Acme Ltd (Jan 2019 - Dec 2022)
- Built REST APIs in Python and FastAPI.

Education
BSc Computer Science, University of Leeds, 2018
"""


def llm_settings(tmp_path: Path, model: Path, **kw) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "db"),
        ray_namespace=f"llm{uuid.uuid4().hex[:8]}",
        standardizer="vllm",
        llm=LLMSettings(
            model=str(model),
            max_model_len=4096,
            max_tokens=256,
            dtype="float32",
            enforce_eager=True,
            num_gpus=0,  # CPU build of vLLM: the engine actor asks for no GPU
        ),
        **kw,
    )


def test_vllm_stage_resources_follow_settings(tmp_path):
    s = Settings(standardizer="vllm", llm=LLMSettings(model="m", num_gpus=0.5, engines=2, tensor_parallel_size=1))
    opts = stage_options(s)["standardize"]
    assert (opts.num_gpus, opts.actors) == (0.5, 2)
    assert stage_options(s.model_copy(update={"llm": LLMSettings(model="m", num_gpus=1.0, tensor_parallel_size=2)}))["standardize"].num_gpus == 2.0


@pytest.mark.vllm
def test_ray_data_stage_standardizes_a_batch_with_vllm(ray_cluster, tmp_path, tiny_model_dir):  # noqa: F811
    require("vllm")
    folder = tmp_path / "cvs"
    folder.mkdir()
    names = ["Ana Lima", "Ben Okafor", "Chloé Martin", "Dev Patel"]
    for i, name in enumerate(names):
        (folder / f"cv{i}.txt").write_text(CV.format(name=name, user=f"candidate{i}", n=i))
    (folder / "empty.txt").write_text("")
    settings = llm_settings(tmp_path, tiny_model_dir, ingest_batch_size=4)

    report = run_ingest([str(folder)], settings)

    assert report.status is JobStatus.succeeded
    assert report.stored == len(names)
    assert [Path(o.file).name for o in report.failed] == ["empty.txt"]
    store = Store(settings.data_dir, dim=384)
    for o in report.outcomes:
        if not o.ok:
            continue
        record = store.get_cv(o.id)
        assert isinstance(record.profile, CVProfile)  # schema-valid by construction, and it round-tripped
        CVProfile.model_validate_json(record.profile.model_dump_json())
        assert record.provenance.backend == "vllm" and record.provenance.prompt_version
        # Fields the rules read reliably check and fill the LLM output (random weights here).
        assert record.profile.contact.email == f"candidate{Path(o.file).stem[2:]}@example.com"


@pytest.mark.vllm
def test_serve_deployment_standardizes_one_upload_with_vllm(ray_cluster, tmp_path, tiny_model_dir):  # noqa: F811
    require("vllm")
    from ray import serve

    from cvmatch_ray.serve.deployments import StandardizerDeployment

    settings = llm_settings(tmp_path, tiny_model_dir)
    app = StandardizerDeployment.options(name="LLMStandardizer", ray_actor_options={"num_cpus": 0}).bind(settings)
    handle = serve.run(app, name="llm-standardizer", route_prefix=None)
    try:
        text = CV.format(name="Eve Adams", user="eve", n=7)
        extracted = Extracted("0" * 32, "cv", None, text, [], "text")
        standardized = handle.standardize.remote(extracted).result(timeout_s=600)
        assert isinstance(standardized, Standardized)
        profile, provenance = standardized.profile, standardized.provenance
        assert isinstance(profile, CVProfile)
        assert profile.contact.email == "eve@example.com"
        assert provenance.backend == "vllm" and provenance.model == str(tiny_model_dir)
        assert provenance.extractor == "text"
    finally:
        serve.delete("llm-standardizer")
