"""cluster.yaml is a valid Ray autoscaler config with the node types the pipelines expect."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cvmatch_ray.config import Settings

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"

# What each instance type really has (AWS spec sheets): declared resources must not claim more.
INSTANCES = {
    "m6i.2xlarge": {"CPU": 8, "GPU": 0, "gpu": None},
    "m6i.4xlarge": {"CPU": 16, "GPU": 0, "gpu": None},
    "g5.xlarge": {"CPU": 4, "GPU": 1, "gpu": "A10G"},
    "g6e.xlarge": {"CPU": 4, "GPU": 1, "gpu": "L40S"},
    "p5.48xlarge": {"CPU": 192, "GPU": 8, "gpu": "H100"},
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _docker_env(config: dict[str, Any]) -> dict[str, str]:
    env = {}
    for option in config["docker"]["run_options"]:
        parts = shlex.split(option)
        if parts[0] == "--env":
            key, _, value = parts[1].partition("=")
            env[key] = value
    return env


def test_matches_rays_schema(config: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.validate(config, schema)


def test_ray_prepares_and_validates_it(config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["available_node_types"]["gpu_a10g"]["resources"].update(GPU=0.5),
        lambda c: c["available_node_types"]["gpu_a10g"].update(gpus=1),
        lambda c: c.update(head_node_type="nope"),
        lambda c: c.update(max_workers=0) or c["available_node_types"]["cpu_worker"].update(min_workers=1),
    ],
)
def test_validation_catches_broken_copies(config: dict[str, Any], breakage: Any) -> None:
    broken = copy.deepcopy(config)
    breakage(broken)
    with pytest.raises((jsonschema.ValidationError, ValueError)):
        validate_config(prepare_config(broken))


def test_node_types_and_resources(config: dict[str, Any]) -> None:
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU", 0) > 0 and head["resources"].get("GPU", 0) == 0

    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert {INSTANCES[t["node_config"]["InstanceType"]]["gpu"] for t in gpu_types.values()} >= {"A10G", "L40S"}

    for name, node_type in types.items():
        spec = INSTANCES[node_type["node_config"]["InstanceType"]]
        resources = node_type["resources"]
        assert 0 < resources["CPU"] <= spec["CPU"], name
        assert resources.get("GPU", 0) <= spec["GPU"], name
        if spec["gpu"]:
            # Lets a stage ask for accelerator_type=... and get the right node launched.
            assert resources.get(f"accelerator_type:{spec['gpu']}") == 1, name
        if name != config["head_node_type"]:
            assert 0 <= node_type["min_workers"] <= node_type["max_workers"] <= config["max_workers"], name
            # GPU nodes cost money idle: they scale from zero.
            if spec["gpu"]:
                assert node_type["min_workers"] == 0, name


def test_setup_installs_the_project_with_the_right_extras(config: dict[str, Any]) -> None:
    prepared = prepare_config(copy.deepcopy(config))
    mounts = config["file_mounts"]
    project = next(remote for remote, local in mounts.items() if local in (".", "./"))
    installs = re.compile(rf'pip install .*"{re.escape(project)}(\[(?P<extras>[^\]]*)\])?"')

    def extras(commands: list[str]) -> set[str] | None:
        for command in commands:
            m = installs.search(command)
            if m:
                return set((m.group("extras") or "").split(",")) - {""}
        return None

    assert extras(prepared["head_setup_commands"]) == set()
    for name, node_type in prepared["available_node_types"].items():
        if name == prepared["head_node_type"]:
            continue
        # A node type's own worker_setup_commands replace the global ones.
        commands = node_type.get("worker_setup_commands", prepared["worker_setup_commands"])
        wanted = {"vllm"} if node_type["resources"].get("GPU", 0) else set()
        assert extras(commands) == wanted, name


def test_environment_points_every_node_at_object_storage(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _docker_env(config)
    assert env["CVMATCH_DATA_DIR"].startswith("s3://")
    for key, value in env.items():
        if key.startswith("CVMATCH_"):
            # A misspelt variable would be silently ignored (extra="ignore"): catch it here.
            field = key.removeprefix("CVMATCH_").lower()
            assert field in Settings.model_fields, key
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.data_dir == env["CVMATCH_DATA_DIR"]


def test_images_and_start_commands_match_this_ray(config: dict[str, Any]) -> None:
    for key in ("head_image", "worker_image"):
        assert config["docker"][key].startswith(f"rayproject/ray:{ray.__version__}-"), key
    assert config["docker"]["worker_image"].endswith("-gpu")
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in workers
