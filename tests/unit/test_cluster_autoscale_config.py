"""The cluster launcher configs validate offline against Ray's own autoscaler schema (the
``ray-schema.json`` in Ray's wheel), and the autoscaling one (``examples/cluster-aws.yaml``)
grows on desktop demand: a worker type declaring ``desktop`` units as its ``ray start`` does,
min and max workers, an idle timeout, each node set up before Ray starts on it.
``cluster.yaml`` (Ray's ``local`` provider) stays a fixed pool, because Ray refuses node
types there: checked, so a Ray that starts accepting them shows up here."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "cluster.yaml"
AUTOSCALE = ROOT / "examples" / "cluster-aws.yaml"
RAY_SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"

Config = dict[str, Any]


def _load(path: Path) -> Config:
    config: Config = yaml.safe_load(path.read_text())
    return config


@pytest.fixture(scope="module")
def ray_schema() -> Config:
    schema: Config = json.loads(RAY_SCHEMA.read_text())
    return schema


@pytest.fixture
def autoscale() -> Config:
    return _load(AUTOSCALE)


@pytest.mark.parametrize("path", [LOCAL, AUTOSCALE], ids=lambda p: p.name)
def test_the_config_is_valid_for_rays_schema(ray_schema: Config, path: Path) -> None:
    jsonschema.validate(_load(path), ray_schema)


def test_the_autoscaling_config_is_what_ray_up_accepts(autoscale: Config) -> None:
    prepared = prepare_config(autoscale)  # as `ray up` does, offline (no cloud call)
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c["available_node_types"]["desktops"].update(max_workers="ten"),
        lambda c: c["available_node_types"]["desktops"].update(resourcez={"desktop": 8}),
        lambda c: c.update(idle_timeout_minutes="5 minutes"),
        lambda c: c["available_node_types"]["desktops"].pop("node_config"),
    ],
    ids=["max_workers-not-a-number", "misspelt-key", "idle-timeout-not-a-number", "no-node-config"],
)
def test_a_broken_copy_fails_rays_schema(
    ray_schema: Config, autoscale: Config, breakage: Any
) -> None:
    broken = copy.deepcopy(autoscale)
    breakage(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema)


def _start_resources(commands: list[str]) -> dict[str, float]:
    (start,) = [c for c in commands if "ray start" in c]
    match = re.search(r"--resources='([^']*)'", start)
    return json.loads(match.group(1)) if match else {}


def test_workers_declare_desktop_units_as_the_autoscaler_plans_them(autoscale: Config) -> None:
    head_type = autoscale["head_node_type"]
    workers = {n: t for n, t in autoscale["available_node_types"].items() if n != head_type}
    assert workers, "no worker type"
    (worker,) = workers.values()  # one worker type: its start command is worker_start_ray_commands
    declared = worker["resources"]["desktop"]
    assert declared >= 1
    assert _start_resources(autoscale["worker_start_ray_commands"]).get("desktop") == declared
    assert 0 <= worker["min_workers"] < worker["max_workers"] <= autoscale["max_workers"]
    assert autoscale["idle_timeout_minutes"] > 0
    # the head runs the API and no desktops
    head = autoscale["available_node_types"][head_type]
    assert head["resources"].get("desktop", 0) == 0
    assert _start_resources(autoscale["head_start_ray_commands"]).get("desktop", 0) == 0


def test_each_node_is_set_up_before_ray_starts_on_it(autoscale: Config) -> None:
    # The launcher runs setup_commands before the start commands on every node it adds.
    assert any("scripts/setup.sh" in c for c in autoscale["setup_commands"])
    for which in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert not any("setup.sh" in c for c in autoscale[which])
    assert autoscale["file_mounts"]["~/orchestrator"] == "."


@pytest.mark.parametrize("which", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_autoscaled_nodes_keep_the_clusters_promises(autoscale: Config, which: str) -> None:
    (start,) = [c for c in autoscale[which] if "ray start" in c]
    assert re.search(r"(^|\s)RAY_AUTH_MODE=token\s", start), start
    assert "RAY_SERVE_PROXY_USE_GRPC=1" in start
    assert "~/.ray/auth_token" in autoscale["file_mounts"]
    if which.startswith("head"):
        assert "--dashboard-host=127.0.0.1" in start
        assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start


def test_the_local_provider_refuses_node_types() -> None:
    local = _load(LOCAL)
    assert local["provider"]["type"] == "local" and "available_node_types" not in local
    with_types = copy.deepcopy(local)
    with_types["available_node_types"] = {
        "desktops": {"resources": {"desktop": 8}, "node_config": {}, "max_workers": 2}
    }
    with pytest.raises(Exception, match="available_node_types is not supported"):
        prepare_config(with_types)


@pytest.mark.parametrize("which", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_every_node_waits_for_the_autoscaler(
    autoscale: Config, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import config

    (start,) = [c for c in autoscale[which] if "ray start" in c]
    for name, value in re.findall(r"(?:^|\s)(ORCHESTRATOR_[A-Z_]+)=(\S+)", start):
        monkeypatch.setenv(name, value)
    read = config.Settings()  # as the node's Ray processes read them
    assert read.autoscale is True
    assert read.schedule_timeout_s() >= 600  # an instance boots and runs setup.sh
