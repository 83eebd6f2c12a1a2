"""The KubeRay files (``examples/kuberay/``) are objects a named KubeRay release accepts, and
they keep the project's promises on Kubernetes.

- ``raycluster.yaml`` validates, with ``check-jsonschema`` run as a program, against the
  ``openAPIV3Schema`` of the ``RayCluster`` CRD of KubeRay v1.7.0 (pinned by sha256 in
  ``tests/fixtures/kuberay/SOURCE.md``), turned into JSON Schema as the API server reads it:
  ``x-kubernetes-*`` keys dropped, ``int-or-string`` as integer or string, ``nullable`` as a
  null type, unknown fields refused (``kubectl apply`` validates strictly); a broken copy fails.
- Checks of our own: autoscaling on with an idle timeout, a worker group declaring ``desktop``
  units in KubeRay's format, the Docker engine beside each worker sharing the socket volumes at
  the same paths, secrets by reference only, the API's Service reaching the head's proxy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "examples" / "kuberay"
MANIFEST = KUBERAY / "raycluster.yaml"
API = KUBERAY / "api.yaml"
START = KUBERAY / "start-node.sh"
SOURCE = ROOT / "tests" / "fixtures" / "kuberay" / "SOURCE.md"
CRD_NAME = "ray.io_rayclusters.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

Schema = dict[str, Any]


# ------------------------------------------------------------ CRD -> JSON Schema


def _convert(node: Any) -> Any:
    """One OpenAPI v3 schema node of a CRD as JSON Schema (draft 7)."""
    if not isinstance(node, dict):
        return node
    out: Schema = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    for key in ("properties", "patternProperties"):
        if key in out:
            out[key] = {name: _convert(sub) for name, sub in out[key].items()}
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = _convert(out[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_convert(sub) for sub in out[key]]
    if node.get("x-kubernetes-int-or-string") and not ({"anyOf", "oneOf"} & out.keys()):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    # The API server drops unknown fields; `kubectl apply` (strict field validation) refuses
    # them: a misspelt field is an error here too, unless the node keeps unknown fields.
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_json_schema(crd: Schema, version: str) -> Schema:
    """The JSON Schema of ``version`` of ``crd`` (served), for a whole object of its kind."""
    spec = crd["spec"]
    served = [v for v in spec["versions"] if v["name"] == version and v.get("served")]
    if not served:
        raise LookupError(f"{crd['metadata']['name']} serves no version {version!r}")
    schema: Schema = _convert(served[0]["schema"]["openAPIV3Schema"])
    props = schema.setdefault("properties", {})
    # What the API server checks before the schema: the route (group/version, kind) and a name.
    props["apiVersion"] = {"const": f"{spec['group']}/{version}"}
    props["kind"] = {"const": spec["names"]["kind"]}
    props["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return schema


MINI_CRD: Schema = {
    "metadata": {"name": "widgets.example.io"},
    "spec": {
        "group": "example.io",
        "names": {"kind": "Widget"},
        "versions": [
            {"name": "v1alpha1", "served": False, "schema": {"openAPIV3Schema": {}}},
            {
                "name": "v1",
                "served": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "x-kubernetes-validations": [{"rule": "self.size > 0"}],
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "format": "int32"},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "note": {"type": "string", "nullable": True},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                        "properties": {"a": {"type": "string"}},
                                    },
                                    "tags": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {"type": "string"},
                                    },
                                },
                            },
                        },
                    }
                },
            },
        ],
    },
}


def _widget(**spec: Any) -> Schema:
    return {
        "apiVersion": "example.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": spec,
    }


def _errors(schema: Schema, instance: Schema) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def test_the_conversion_reads_openapi_as_the_api_server_does() -> None:
    schema = crd_json_schema(MINI_CRD, "v1")
    assert "x-kubernetes" not in json.dumps(schema)
    assert _errors(schema, _widget(size=1, port=80, note=None, extra={"b": 1}, tags=["x"])) == []
    assert _errors(schema, _widget(size=1, port="http")) == []
    assert _errors(schema, _widget(size=1, port=1.5))  # int-or-string: not a float
    assert _errors(schema, _widget(size="1"))  # typed
    assert _errors(schema, _widget())  # required
    assert _errors(schema, _widget(size=1, sise=2))  # unknown field: refused
    wrong_kind = {**_widget(size=1), "kind": "Gadget"}
    assert any("Widget" in e for e in _errors(schema, wrong_kind))
    wrong_version = {**_widget(size=1), "apiVersion": "example.io/v1alpha1"}
    assert _errors(schema, wrong_version)
    with pytest.raises(LookupError):
        crd_json_schema(MINI_CRD, "v1alpha1")  # not served


# ------------------------------------------------------------ the pinned KubeRay CRD


def _pinned_sha256() -> str:
    match = re.search(r"\| sha256 \| `([0-9a-f]{64})` \|", SOURCE.read_text())
    assert match, f"{SOURCE} names no sha256"
    return match.group(1)


def _find_crd() -> Path | None:
    candidates = [
        os.environ.get("ORCHESTRATOR_KUBERAY_CRD"),
        str(SOURCE.parent / CRD_NAME),
        str(ROOT.parent / "shared" / "kuberay" / CRD_NAME),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def crd_schema_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _find_crd()
    if path is None:
        pytest.skip(
            f"KubeRay's RayCluster CRD ({CRD_NAME} of v1.7.0) is not on this machine: "
            f"see {SOURCE.relative_to(ROOT)} for where it is looked for and how to get it"
        )
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    assert digest == _pinned_sha256(), f"{path} is not the pinned CRD (sha256 {digest})"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader
    assert (
        crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "RayCluster"
    )
    out = tmp_path_factory.mktemp("crd") / "raycluster-v1.schema.json"
    out.write_text(json.dumps(crd_json_schema(crd, "v1")))
    return out


def _check_jsonschema(schema: Path, *instances: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--schemafile", str(schema), *map(str, instances)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_manifest_is_a_raycluster_kuberay_accepts(crd_schema_file: Path) -> None:
    done = _check_jsonschema(crd_schema_file, MANIFEST)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def _manifest() -> Schema:
    doc: Schema = yaml.safe_load(MANIFEST.read_text())
    return doc


def _workers(doc: Schema) -> Schema:
    group: Schema = doc["spec"]["workerGroupSpecs"][0]
    return group


def _set_max_replicas(doc: Schema) -> None:
    _workers(doc)["maxReplicas"] = "ten"


def _misspell_ray_start_params(doc: Schema) -> None:
    _workers(doc)["rayStartParam"] = _workers(doc).pop("rayStartParams")


def _resources_as_a_mapping(doc: Schema) -> None:
    _workers(doc)["rayStartParams"]["resources"] = {"desktop": 4}


def _wrong_kind(doc: Schema) -> None:
    doc["kind"] = "RayClusters"


def _container_without_image_name(doc: Schema) -> None:
    del _workers(doc)["template"]["spec"]["containers"][1]["name"]


def _no_head(doc: Schema) -> None:
    del doc["spec"]["headGroupSpec"]


def _bad_cpu_quantity(doc: Schema) -> None:
    containers = _workers(doc)["template"]["spec"]["containers"]
    containers[0]["resources"]["limits"]["cpu"] = "four"


@pytest.mark.parametrize(
    ("breakage", "where"),
    [
        (_set_max_replicas, "$.spec.workerGroupSpecs[0].maxReplicas"),
        (_misspell_ray_start_params, "rayStartParam"),
        (_resources_as_a_mapping, "$.spec.workerGroupSpecs[0].rayStartParams.resources"),
        (_wrong_kind, "$.kind"),
        (_container_without_image_name, "$.spec.workerGroupSpecs[0].template.spec.containers[1]"),
        (_no_head, "headGroupSpec"),
        (_bad_cpu_quantity, "$.spec.workerGroupSpecs[0].template.spec.containers[0].resources"),
    ],
)
def test_a_broken_copy_fails(
    crd_schema_file: Path, tmp_path: Path, breakage: Callable[[Schema], None], where: str
) -> None:
    doc = copy.deepcopy(_manifest())
    breakage(doc)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(doc))
    done = _check_jsonschema(crd_schema_file, broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Schema validation errors were encountered" in done.stdout, done.stdout
    assert where in done.stdout, done.stdout


# ------------------------------------------------------------ our own promises


def _container(pod: Schema, name: str) -> Schema:
    found: Schema = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return found


def _env(container: Schema) -> dict[str, Schema]:
    return {e["name"]: e for e in container.get("env", [])}


def _mounts(container: Schema) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def kuberay_resources(value: str) -> dict[str, float]:
    """``rayStartParams.resources`` as KubeRay wants it: a JSON object in a JSON string."""
    inner = json.loads(value)
    assert isinstance(inner, str), f"not a quoted string: {value!r}"
    resources: dict[str, float] = json.loads(inner)
    return resources


def test_autoscaling_is_on_with_an_idle_timeout() -> None:
    spec = _manifest()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert 60 <= spec["autoscalerOptions"]["idleTimeoutSeconds"] <= 3600


def test_the_worker_group_declares_desktop_units_and_may_grow() -> None:
    doc = _manifest()
    group = _workers(doc)
    assert kuberay_resources(group["rayStartParams"]["resources"])["desktop"] >= 1
    assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert group["maxReplicas"] >= 1
    # the head holds no desktops: agents go to workers, which come and go
    head_params = doc["spec"]["headGroupSpec"]["rayStartParams"]
    assert "desktop" not in head_params.get("resources", "")


def test_the_docker_engine_beside_each_worker_shares_the_sockets_at_the_same_paths() -> None:
    pod = _workers(_manifest())["template"]
    ray = pod["spec"]["containers"][0]  # KubeRay's Ray container is the first
    assert ray["name"] == "ray-worker"
    dind = _container(pod, "docker")
    assert dind["image"].startswith("docker:") and dind["image"].endswith("-dind")
    assert dind["securityContext"]["privileged"] is True
    # the runtime checks a desktop's socket is served by that desktop: it must see its pids
    assert pod["spec"]["shareProcessNamespace"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    ray_mounts, dind_mounts = _mounts(ray), _mounts(dind)
    env = _env(ray)
    runtime_dir = env["ORCHESTRATOR_RUNTIME_DIR"]["value"]
    socket = env["DOCKER_HOST"]["value"].removeprefix("unix://")
    assert env["DOCKER_HOST"]["value"].startswith("unix:///")
    shared = {name for name in ray_mounts if dind_mounts.get(name) == ray_mounts[name]}
    assert runtime_dir in {ray_mounts[n] for n in shared}, (runtime_dir, ray_mounts, dind_mounts)
    assert str(Path(socket).parent) in {ray_mounts[n] for n in shared}, socket
    for name in shared:
        assert "emptyDir" in volumes[name], volumes[name]
    assert f"--host=unix://{socket}" in dind["args"]


def test_each_node_starts_through_the_setup_script() -> None:
    doc = _manifest()
    pods = {
        "head": doc["spec"]["headGroupSpec"]["template"],
        "worker": _workers(doc)["template"],
    }
    for role, pod in pods.items():
        assert pod["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
        ray = pod["spec"]["containers"][0]
        command = " ".join(ray["command"] + ray["args"])
        assert f"/opt/orchestrator/examples/kuberay/start-node.sh {role}" in command, command
    assert os.access(START, os.X_OK)
    subprocess.run(["bash", "-n", str(START)], check=True)


def test_secrets_come_from_a_secret_only() -> None:
    doc = _manifest()
    pods = [doc["spec"]["headGroupSpec"]["template"], _workers(doc)["template"]]
    seen = set()
    for pod in pods:
        for container in pod["spec"]["containers"]:
            for name, entry in _env(container).items():
                if re.search(r"(KEY|KEYS|TOKEN|SECRET|PASSWORD)$", name):
                    assert "value" not in entry, name
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "orchestrator-secrets"
                    seen.add(name)
    assert {"ORCHESTRATOR_API_KEYS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} <= seen


def test_every_orchestrator_variable_set_is_one_the_project_reads() -> None:
    from orchestrator import config

    known = {"ORCHESTRATOR_API_PORT", "ORCHESTRATOR_NODE_SETUP_TIMEOUT_S"}  # start-node.sh's
    for cls in (config.Settings, config.ModelEnv, config.ApiSettings, config.RayEnv):
        known |= {config.env_name(cls, field) for field in cls.model_fields}
    script = START.read_text()
    assert all(
        name in script for name in ("ORCHESTRATOR_API_PORT", "ORCHESTRATOR_NODE_SETUP_TIMEOUT_S")
    )
    doc = _manifest()
    for pod in (doc["spec"]["headGroupSpec"]["template"], _workers(doc)["template"]):
        for container in pod["spec"]["containers"]:
            for name in _env(container):
                if name.startswith("ORCHESTRATOR_"):
                    assert name in known, f"{container['name']}: nothing reads {name}"
                elif name.startswith("RAY_SERVE_"):
                    assert _env(container)[name]["value"] == config.RAY_CLUSTER_ENV[name]


def test_the_api_service_reaches_the_heads_proxy_and_the_proxy_the_api() -> None:
    doc = _manifest()
    objects = {o["kind"]: o for o in yaml.safe_load_all(API.read_text()) if o}
    service, proxy_config = objects["Service"], objects["ConfigMap"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {
        "ray.io/cluster": doc["metadata"]["name"],
        "ray.io/node-type": "head",
    }
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8000
    head = doc["spec"]["headGroupSpec"]["template"]
    proxy = _container(head, "api-proxy")
    named = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    listen = named[port["targetPort"]]
    volumes = {v["name"]: v for v in head["spec"]["volumes"]}
    config_volume = next(v for n, v in volumes.items() if n in _mounts(proxy) and "configMap" in v)
    assert config_volume["configMap"]["name"] == proxy_config["metadata"]["name"]
    (conf,) = proxy_config["data"].values()
    assert re.search(rf"listen {listen};", conf), conf
    api_port = _env(head["spec"]["containers"][0])["ORCHESTRATOR_API_PORT"]["value"]
    assert f"proxy_pass http://127.0.0.1:{api_port};" in conf
    assert "$http_upgrade" in conf  # the console's live desktops are WebSockets
    claim = objects["PersistentVolumeClaim"]["metadata"]["name"]
    assert volumes["records"]["persistentVolumeClaim"]["claimName"] == claim


def test_every_ray_container_waits_for_the_autoscaler(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator import config

    doc = _manifest()
    for pod in (doc["spec"]["headGroupSpec"]["template"], _workers(doc)["template"]):
        env = _env(pod["spec"]["containers"][0])
        for name in ("ORCHESTRATOR_AUTOSCALE", "ORCHESTRATOR_AUTOSCALE_SCHEDULE_TIMEOUT_S"):
            monkeypatch.setenv(name, env[name]["value"])
        read = config.Settings()  # as the node's processes read them
        assert read.autoscale is True
        assert read.schedule_timeout_s() >= 300  # a new Kubernetes node and its image pulls
