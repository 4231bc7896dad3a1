"""deploy/rayservice.yaml is a RayService KubeRay accepts, serving serve_config.gpu.yaml.

Three layers, each tried on broken copies too, so that every check is seen to fail:

- the RayService CRD's own schema (KubeRay v1.7.0, from the shared data folder: see
  ``_crd_path``), applied the way the Kubernetes API server applies a structural schema on
  create with strict field validation;
- the rules KubeRay's operator checks itself before it builds a cluster (not in the schema);
- this project's facts: the embedded Serve config is serve_config.gpu.yaml and parses with
  Ray's ``ServeDeploySchema``, the GPU group asks for GPUs and holds the GPU replicas, data
  lives on S3, and the Ray token and every other credential come from Secrets.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
import ray
import yaml
from jsonschema.exceptions import ValidationError
from packaging.version import Version
from pydantic import BaseModel
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from cvmatch_ray.config import Settings
from cvmatch_ray.serve.app import AppArgs
from cvmatch_ray.serve.env import ray_env

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / "deploy" / "rayservice.yaml"
SERVE_CONFIG = REPO / "serve_config.gpu.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"

# The CRD is upstream data, kept in the shared data folder that developers and CI have beside
# the repository, not in the repository; this variable points at another copy (a newer KubeRay).
CRD_ENV = "KUBERAY_RAYSERVICE_CRD"
CRD_IN_SHARED = Path("shared") / "data" / "kuberay" / "ray.io_rayservices.yaml"

Doc = dict[str, Any]


# --- the manifest -------------------------------------------------------------------------


def _load(text: str) -> Doc:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) == 1, "deploy/rayservice.yaml holds one object, the RayService"
    return docs[0]


@pytest.fixture(scope="module")
def manifest() -> Doc:
    return _load(MANIFEST.read_text(encoding="utf-8"))


def _broken(doc: Doc, breakage: Callable[[Doc], Any]) -> Doc:
    # Deep-copied as one structure: the YAML anchor's env list stays shared between the
    # containers in the copy, as it is in the file.
    broken = copy.deepcopy(doc)
    breakage(broken)
    return broken


def _cluster(doc: Doc) -> Doc:
    return doc["spec"]["rayClusterConfig"]


def _groups(doc: Doc) -> list[Doc]:
    """The head group, then the worker groups."""
    return [_cluster(doc)["headGroupSpec"], *_cluster(doc).get("workerGroupSpecs", [])]


def _ray_container(group: Doc) -> Doc:
    # KubeRay runs Ray in the pod's first container (RayContainerIndex = 0).
    return group["template"]["spec"]["containers"][0]


def _quantity(value: str | int | float) -> float:
    """A Kubernetes CPU or count quantity ("8", "500m", 2) as a number."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _gpus(group: Doc) -> float:
    return float(group.get("rayStartParams", {}).get("num-gpus", "0"))


def _cpus(group: Doc) -> float:
    params = group.get("rayStartParams", {})
    return float(params["num-cpus"]) if "num-cpus" in params else _quantity(_ray_container(group)["resources"]["limits"]["cpu"])


# --- layer 1: the CRD's structural schema ---------------------------------------------------


def _crd_path() -> Path | None:
    explicit = os.environ.get(CRD_ENV)
    if explicit:
        return Path(explicit)
    for folder in (REPO, *REPO.parents):
        if (folder / CRD_IN_SHARED).is_file():
            return folder / CRD_IN_SHARED
    return None


def _as_jsonschema(node: Any) -> Any:
    """A Kubernetes structural schema node as JSON Schema, with the API server's semantics.

    - Unknown fields are errors (``kubectl apply`` asks for strict field validation), unless
      the node preserves unknown fields; an object with no ``properties`` (``metadata``) stays open.
    - ``nullable: true`` admits null.
    - ``x-kubernetes-int-or-string`` admits both (controller-gen already writes the ``anyOf``;
      a node without one gets it here).
    List types and CEL rules are checked by the keywords of ``_validator``.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if "properties" in node:
        out["properties"] = {name: _as_jsonschema(sub) for name, sub in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            out[key] = _as_jsonschema(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [_as_jsonschema(sub) for sub in node[key]]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node and "type" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def _with_defaults(schema: Doc | None, value: Any) -> Any:
    """``value`` as the API server has it when it validates: nulls of fields that are not
    ``nullable`` dropped, then missing fields that have a ``default`` filled in, at every level."""
    if schema is None:
        return value
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        out = {
            k: _with_defaults(props.get(k), v)
            for k, v in value.items()
            if not (v is None and k in props and not props[k].get("nullable"))
        }
        for k, sub in props.items():
            if k not in out and "default" in sub:
                out[k] = _with_defaults(sub, copy.deepcopy(sub["default"]))
        return out
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {k: _with_defaults(schema["additionalProperties"], v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_with_defaults(schema["items"], v) for v in value]
    return value


def _list_type(validator: Any, list_type: str, instance: Any, schema: Doc) -> Iterator[ValidationError]:
    """``x-kubernetes-list-type``: a ``set`` holds no duplicate, a ``map`` no two items with the
    same key fields (defaults applied first: a port without ``protocol`` is TCP)."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen_items: list[Any] = []
        for item in instance:
            if item in seen_items:
                yield ValidationError(f"duplicate entry {item!r} in a set")
            seen_items.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for item in instance:
            key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            if key in seen:
                yield ValidationError(f"duplicate key {key} in a list keyed by {keys}")
            seen.add(key)


_IN_LIST = re.compile(r"^self in (\[.*\])$")


def _cel(validator: Any, rules: list[Doc], instance: Any, schema: Doc) -> Iterator[ValidationError]:
    """``x-kubernetes-validations`` (CEL): the forms this CRD uses, evaluated; any other is an
    error, so that a newer CRD with a new rule is looked at rather than passed."""
    for rule in rules:
        expression = rule["rule"]
        if "oldSelf" in expression:
            continue  # a transition rule: the API server evaluates it on update only
        match = _IN_LIST.match(expression)
        if match is None:
            yield ValidationError(f"CEL rule this test cannot evaluate: {expression!r}")
        elif instance not in ast.literal_eval(match.group(1)):
            yield ValidationError(rule.get("message", expression))


def _checker(openapi: Doc) -> Callable[[Doc], list[str]]:
    """What the API server would refuse in an object, by this CRD schema, as ``/path: message``."""
    formats = jsonschema.FormatChecker()
    formats.checks("int32")(lambda v: not isinstance(v, int) or -(2**31) <= v < 2**31)
    formats.checks("int64")(lambda v: not isinstance(v, int) or -(2**63) <= v < 2**63)
    # OpenAPI v3.0 schemas are JSON Schema draft 4 in these keywords.
    cls = jsonschema.validators.extend(
        jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type, "x-kubernetes-validations": _cel}
    )
    validator = cls(_as_jsonschema(openapi), format_checker=formats)

    def errors(doc: Doc) -> list[str]:
        stored = _with_defaults(openapi, doc)
        return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(stored)]

    return errors


@pytest.fixture(scope="module")
def crd_check() -> Callable[[Doc], list[str]]:
    path = _crd_path()
    if path is None:
        # Upstream data may not be committed here (the project's rule for fetched files), and
        # CI's clean clone has no shared folder beside it: there, only these checks skip.
        reason = (
            f"KubeRay's RayService CRD not found: expected {CRD_IN_SHARED} in a folder above the repository "
            f"(ray-operator/config/crd/bases/ray.io_rayservices.yaml of KubeRay v1.7.0), or {CRD_ENV}=PATH"
        )
        if os.environ.get("CVMATCH_REQUIRE_KUBERAY_CRD") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == "RayService"
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _checker(v1["schema"]["openAPIV3Schema"])


def test_manifest_matches_the_kuberay_crd_schema(crd_check: Callable[[Doc], list[str]], manifest: Doc) -> None:
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    assert crd_check(manifest) == []


def _worker(i: int) -> Callable[[Doc], Doc]:
    return lambda d: _cluster(d)["workerGroupSpecs"][i]


def _env(container: Doc) -> list[Doc]:
    return container.get("env", [])


def _env_of(d: Doc, name: str) -> Doc:
    return next(e for e in _env(_ray_container(_cluster(d)["headGroupSpec"])) if e["name"] == name)


def _literal(d: Doc, name: str, value: str) -> None:
    entry = _env_of(d, name)
    entry.pop("valueFrom")
    entry["value"] = value


def _port(d: Doc, name: str) -> Doc:
    return next(p for p in _ray_container(_cluster(d)["headGroupSpec"])["ports"] if p["name"] == name)


def _gpu_limits(d: Doc) -> Doc:
    return _ray_container(_worker(1)(d))["resources"]["limits"]


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: _worker(0)(d).update(maxReplica=4), "'maxReplica' was unexpected"),
        (lambda d: _cluster(d)["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "num-cpus: 0 is not of type 'string'"),
        (lambda d: _cluster(d)["authOptions"].update(mode="Token"), "mode: 'Token' is not one of"),
        # The serve port takes the dashboard's number; both default to TCP, the second key.
        (lambda d: _port(d, "serve").update(containerPort=8265), '"containerPort": 8265, "protocol": "TCP"'),
        (lambda d: _ray_container(_worker(0)(d)).update(env=[{"name": "A"}, {"name": "A"}]), 'duplicate key {"name": "A"}'),
        (lambda d: _port(d, "gcs-server").update(containerPort="6379"), "'6379' is not of type 'integer'"),
        (lambda d: _worker(0)(d).update(maxReplicas=2**31), "is not a 'int32'"),
        (lambda d: _worker(0)(d).pop("template"), "'template' is a required property"),
        (lambda d: _cluster(d).update(managedBy="someone-else"), "managedBy field value must be"),
        # A null is dropped, then the default fills in: neither is an error.
        (lambda d: _worker(0)(d).update(minReplicas=None, maxReplicas=None, groupName=None), "'groupName' is a required property"),
    ],
)
def test_the_schema_check_catches_broken_copies(
    crd_check: Callable[[Doc], list[str]], manifest: Doc, breakage: Callable[[Doc], Any], expected: str
) -> None:
    errors = crd_check(_broken(manifest, breakage))
    assert any(expected in e for e in errors), errors


# --- layer 2: what KubeRay's operator checks before building the cluster ---------------------


def kuberay_problems(doc: Doc) -> list[str]:
    """Rules of KubeRay v1.7.0's ``ValidateRayServiceMetadata`` / ``ValidateRayServiceSpec``
    (ray-operator/controllers/ray/utils/validation.go) that the schema does not express."""
    problems = []
    name = doc["metadata"]["name"]
    # 53 minus "-xxxxx", the suffix of the RayCluster it creates; a DNS-1035 label.
    if len(name) > 47 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        problems.append(f"name {name!r} is not a DNS-1035 label of at most 47 characters")
    cluster = _cluster(doc)
    auth = cluster.get("authOptions") or {}
    if auth.get("mode") == "token":
        version = cluster.get("rayVersion")
        if not version or Version(version) < Version("2.52.0"):
            problems.append(f"token auth needs rayVersion >= 2.52.0, got {version!r}")
    if auth.get("enableK8sTokenAuth"):
        problems.append("Kubernetes token auth is not supported for a RayService")
    if (cluster["headGroupSpec"].get("headService") or {}).get("metadata", {}).get("name"):
        problems.append("headService.metadata.name must not be set in a RayService")
    upgrade = (doc["spec"].get("upgradeStrategy") or {}).get("type")
    if upgrade not in (None, "NewCluster", "NewClusterWithIncrementalUpgrade", "None"):
        problems.append(f"unknown upgradeStrategy.type {upgrade!r}")
    for group in _groups(doc):
        label = group.get("groupName", "head")
        params = group.get("rayStartParams", {})
        if not group["template"]["spec"].get("containers"):
            problems.append(f"{label}: no container")
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            problems.append(f"{label}: resources set both in rayStartParams and in resources")
        if "labels" in params:
            problems.append(f"{label}: rayStartParams['labels'] is refused; use labels")
    for group in cluster.get("workerGroupSpecs", []):
        # The CRD defaults both (0 and 2**31 - 1) before the operator sees them.
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if low > high:
            problems.append(f"{group['groupName']}: minReplicas {low} > maxReplicas {high}")
    return problems


def test_kuberay_would_accept_it(manifest: Doc) -> None:
    assert kuberay_problems(manifest) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: d["metadata"].update(name="CVMatch"), "DNS-1035"),
        (lambda d: _cluster(d).update(rayVersion="2.51.0"), "2.52.0"),
        (lambda d: _cluster(d)["authOptions"].update(enableK8sTokenAuth=True), "Kubernetes token auth"),
        (lambda d: _worker(0)(d).update(resources={"CPU": "8"}), "both in rayStartParams"),
        (lambda d: _worker(0)(d).update(minReplicas=9), "minReplicas 9 > maxReplicas"),
        (lambda d: d["spec"]["upgradeStrategy"].update(type="Rolling"), "upgradeStrategy"),
    ],
)
def test_the_operator_rules_catch_broken_copies(manifest: Doc, breakage: Callable[[Doc], Any], expected: str) -> None:
    problems = kuberay_problems(_broken(manifest, breakage))
    assert any(expected in p for p in problems), problems


# --- layer 3: this project's facts ------------------------------------------------------------

# Names whose values are credentials: a literal value would put a secret in the manifest.
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY|ACCESS_KEY")


def _literal_env(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _env(container) if "value" in e}


def _settings(env: dict[str, str]) -> Settings:
    """``Settings`` as a pod with this environment reads them (and nothing else)."""
    with mock.patch.dict(os.environ, env, clear=True):
        return Settings()


def _unknown_setting(name: str) -> bool:
    """Whether ``CVMATCH_A__B`` names no field of ``Settings`` (``extra="ignore"`` would
    silently drop a misspelt one)."""
    model: Any = Settings
    for part in name.removeprefix("CVMATCH_").lower().split("__"):
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return True
        model = model.model_fields[part].annotation
    return False


def _replicas(deployment: Any) -> tuple[int, int]:
    """(fewest, most) replicas of a Serve deployment."""
    config = deployment.autoscaling_config
    if isinstance(config, dict):
        config = AutoscalingConfig(**config)
    if isinstance(config, AutoscalingConfig):
        return config.min_replicas, config.max_replicas
    count = deployment.num_replicas if isinstance(deployment.num_replicas, int) else 1
    return count, count


def cvmatch_problems(doc: Doc, serve_text: str) -> list[str]:
    """What would make this RayService not the cvmatch GPU deployment the docs describe."""
    problems: list[str] = []
    cluster = _cluster(doc)
    head = cluster["headGroupSpec"]
    workers = cluster.get("workerGroupSpecs", [])

    # The Serve config: serve_config.gpu.yaml, to the character, and valid for Ray.
    embedded = doc["spec"].get("serveConfigV2", "")
    if embedded != serve_text:
        problems.append("serveConfigV2 is not serve_config.gpu.yaml: run python scripts/sync_rayservice.py")
    try:
        serve = ServeDeploySchema.model_validate(yaml.safe_load(embedded))
    except Exception as e:  # any parse or validation failure is the finding
        return [*problems, f"serveConfigV2 does not parse with ServeDeploySchema: {e}"]
    (app,) = serve.applications
    args = AppArgs.model_validate(app.args)
    if args.api_keys:
        problems.append("API keys written into serveConfigV2: they belong in the cvmatch-api-keys Secret")
    if cluster.get("rayVersion") != ray.__version__:
        problems.append(f"rayVersion {cluster.get('rayVersion')!r} is not this project's Ray {ray.__version__}")
    if (doc["spec"].get("upgradeStrategy") or {}).get("type") != "None":
        problems.append("upgradeStrategy is not None: an upgrade would run a second progress actor on the same data")

    # One environment for every Ray container: Serve builds the app on any node.
    containers = [_ray_container(g) for g in _groups(doc)]
    if any(_env(c) != _env(containers[0]) for c in containers):
        problems.append("the Ray containers do not all have the same environment")
    env = _literal_env(containers[0])
    from_secret = {e["name"] for e in _env(containers[0]) if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")}
    for name in sorted({*env, *from_secret}):
        if name.startswith("CVMATCH_") and _unknown_setting(name):
            problems.append(f"{name} is no setting of cvmatch_ray.config.Settings")
    for name in env:
        if _SECRET_NAME.search(name):
            problems.append(f"{name} has a literal value: take it from a Secret")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "CVMATCH_API_KEYS"):
        if name not in from_secret:
            problems.append(f"{name} does not come from a Secret")
    missing = {k: v for k, v in ray_env("haproxy").items() if env.get(k) != v}
    if missing:
        problems.append(f"the Ray environment of cvmatch_ray.serve.env.ray_env('haproxy') is missing: {missing}")
    settings = _settings(env)
    if not settings.data_dir.startswith("s3://"):
        problems.append(f"CVMATCH_DATA_DIR {settings.data_dir!r} is not on S3: every pod must see the same data")

    # Ray's token: KubeRay injects RAY_AUTH_MODE and RAY_AUTH_TOKEN from the Secret, unless
    # the container already sets them (a literal there would bypass the Secret).
    auth = cluster.get("authOptions") or {}
    if auth.get("mode") != "token" or not auth.get("secretName"):
        problems.append("Ray token auth is not on with a token from a Secret (authOptions.mode/secretName)")
    for c in containers:
        for e in _env(c):
            if e["name"].startswith("RAY_AUTH_"):
                problems.append(f"{c['name']} sets {e['name']} itself: leave it to authOptions")

    # Serve listens where KubeRay's serve Service sends traffic.
    ports = {p.get("name"): p["containerPort"] for p in _ray_container(head).get("ports", [])}
    if serve.http_options.port != ports.get("serve") or serve.http_options.host != "0.0.0.0":
        problems.append(f"Serve listens on {serve.http_options.host}:{serve.http_options.port}, not on the 'serve' port {ports.get('serve')} of the pod")

    # GPUs: only the GPU group asks for them, through Kubernetes and through Ray alike.
    if _gpus(head) or "nvidia.com/gpu" in _ray_container(head).get("resources", {}).get("limits", {}):
        problems.append("the head asks for a GPU")
    gpu_groups = [g for g in workers if _gpus(g) > 0]
    if not gpu_groups:
        problems.append("no worker group has num-gpus")
    for g in workers:
        limits = _ray_container(g).get("resources", {}).get("limits", {})
        if _quantity(limits.get("nvidia.com/gpu", 0)) != _gpus(g):
            problems.append(f"{g['groupName']}: nvidia.com/gpu limit {limits.get('nvidia.com/gpu')} != num-gpus {_gpus(g)}")
        if _cpus(g) > _quantity(limits.get("cpu", 0)):
            problems.append(f"{g['groupName']}: num-cpus {_cpus(g)} exceeds its cpu limit {limits.get('cpu')}")

    # Every replica fits on some worker, and the GPU replicas fit in the GPU pods: Serve's
    # minimum in the pods always up, its maximum in the most the group scales to.
    need_min = need_max = 0.0
    for d in app.deployments:
        cpus, gpus = d.ray_actor_options.num_cpus or 0, d.ray_actor_options.num_gpus or 0
        if not any(cpus <= _cpus(g) and gpus <= _gpus(g) for g in workers):
            problems.append(f"{d.name} ({cpus} CPU, {gpus} GPU) fits no worker group")
        low, high = _replicas(d)
        need_min, need_max = need_min + low * gpus, need_max + high * gpus
    have_min = sum(g.get("minReplicas", 0) * _gpus(g) for g in gpu_groups)
    have_max = sum(g.get("maxReplicas", 0) * _gpus(g) for g in gpu_groups)
    if need_min > have_min or need_max > have_max:
        problems.append(f"GPU replicas need {need_min}..{need_max} GPUs, the GPU group holds {have_min}..{have_max}")

    # vLLM: replicas sharing a GPU must leave memory for each other and the Embedder.
    if args.standardizer == "vllm":
        standardizer = next(d for d in app.deployments if d.name == "Standardizer")
        per_gpu = int(1 // (standardizer.ray_actor_options.num_gpus or 1))
        if not settings.llm.model:
            problems.append("CVMATCH_LLM__MODEL is not set for the vLLM Standardizer")
        if per_gpu * settings.llm.gpu_memory_utilization >= 1:
            problems.append(
                f"{per_gpu} vLLM engines per GPU at gpu_memory_utilization {settings.llm.gpu_memory_utilization} "
                "take all of its memory"
            )
    return problems


@pytest.fixture(scope="module")
def serve_text() -> str:
    return SERVE_CONFIG.read_text(encoding="utf-8")


def test_it_is_the_gpu_deployment_of_this_project(manifest: Doc, serve_text: str) -> None:
    assert cvmatch_problems(manifest, serve_text) == []
    serve = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    (app,) = serve.applications
    assert app.import_path == "cvmatch_ray.serve.app:build_app"
    assert {d.name for d in app.deployments} == {"APIIngress", "UploadPipeline", "Extractor", "Standardizer", "Embedder"}


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: d["spec"].update(serveConfigV2=d["spec"]["serveConfigV2"].replace("max_replicas: 2", "max_replicas: 3", 1)), "sync_rayservice"),
        (lambda d: d["spec"].update(serveConfigV2="applications: [{name: x}]\n"), "ServeDeploySchema"),
        (lambda d: _env_of(d, "CVMATCH_DATA_DIR").update(value="/data/cvmatch"), "not on S3"),
        (lambda d: _literal(d, "AWS_SECRET_ACCESS_KEY", "x"), "literal value"),
        (lambda d: _env_of(d, "CVMATCH_API_KEYS").update(valueFrom={"configMapKeyRef": {"name": "c", "key": "k"}}), "CVMATCH_API_KEYS does not come from a Secret"),
        (lambda d: _env(_ray_container(_cluster(d)["headGroupSpec"])).append({"name": "CVMATCH_DAT_DIR", "value": "s3://b/p"}), "no setting"),
        (lambda d: _env(_ray_container(_cluster(d)["headGroupSpec"])).append({"name": "RAY_AUTH_MODE", "value": "disabled"}), "leave it to authOptions"),
        (lambda d: _cluster(d).pop("authOptions"), "token auth is not on"),
        (lambda d: _ray_container(_worker(0)(d)).update(env=[]), "same environment"),
        (lambda d: _env_of(d, "RAY_worker_niceness").update(value="15"), "ray_env"),
        (lambda d: _env_of(d, "CVMATCH_LLM__GPU_MEMORY_UTILIZATION").update(value="0.85"), "take all of its memory"),
        (lambda d: _cluster(d).update(rayVersion="2.59.0"), "rayVersion"),
        (lambda d: d["spec"].update(upgradeStrategy={"type": "NewCluster"}), "second progress actor"),
        (lambda d: _port(d, "serve").update(containerPort=8001), "'serve' port"),
        (lambda d: _cluster(d)["headGroupSpec"]["rayStartParams"].update({"num-gpus": "1"}), "head asks for a GPU"),
        (lambda d: _gpu_limits(d).pop("nvidia.com/gpu"), "nvidia.com/gpu limit"),
        (lambda d: _worker(1)(d)["rayStartParams"].pop("num-gpus"), "no worker group has num-gpus"),
        (lambda d: _worker(1)(d).update(maxReplicas=1), "GPU replicas need"),
        (lambda d: _worker(1)(d)["rayStartParams"].update({"num-cpus": "16"}), "exceeds its cpu limit"),
        (lambda d: _worker(0)(d)["rayStartParams"].update({"num-cpus": "0.5"}) or _worker(1)(d)["rayStartParams"].update({"num-cpus": "0.5"}), "fits no worker group"),
    ],
)
def test_the_project_checks_catch_broken_copies(
    manifest: Doc, serve_text: str, breakage: Callable[[Doc], Any], expected: str
) -> None:
    problems = cvmatch_problems(_broken(manifest, breakage), serve_text)
    assert any(expected in p for p in problems), problems


# --- the copy of the Serve config, and the image ---------------------------------------------


def _sync_script() -> Any:
    spec = importlib.util.spec_from_file_location("sync_rayservice", REPO / "scripts" / "sync_rayservice.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sync_script_replaces_only_the_serve_config(serve_text: str) -> None:
    render = _sync_script().render
    current = MANIFEST.read_text(encoding="utf-8")
    stale = render(current, "proxy_location: HeadOnly\napplications: []\n")
    assert stale != current and _load(stale)["spec"]["serveConfigV2"] == "proxy_location: HeadOnly\napplications: []\n"
    assert render(stale, serve_text) == current
    with pytest.raises(ValueError):
        render(current.replace("serveConfigV2: |", "serveConfig: |"), serve_text)


def test_the_image_is_built_on_this_ray() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    (base,) = re.findall(r"^ARG RAY_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base == f"rayproject/ray:{ray.__version__}-py311-gpu"
    # Every Ray image named in the build instructions, the CPU one included, is this Ray's.
    for text in (dockerfile, (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")):
        for tag in re.findall(r"rayproject/ray:([\w.]+)-", text):
            assert tag == ray.__version__, tag
