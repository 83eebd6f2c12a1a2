"""``cluster.yaml`` is a config Ray's cluster launcher takes (the checks ``ray up`` runs
before it touches a machine), and the cluster it starts keeps the project's promises:
token authentication on every node, the dashboard on loopback, desktops declared."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG = Path(__file__).resolve().parents[2] / "cluster.yaml"


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return raw


def test_ray_up_accepts_it(config: dict[str, Any]) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(config)  # as `ray up` does, then validates the result
    validate_config(prepared)
    assert prepared["provider"]["type"] == "local"


@pytest.mark.parametrize("which", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_every_node_starts_with_token_auth_and_desktops(config: dict[str, Any], which: str) -> None:
    start = [c for c in config[which] if "ray start" in c]
    assert len(start) == 1, config[which]
    cmd = start[0]
    assert re.search(r"(^|\s)RAY_AUTH_MODE=token\s", cmd), cmd
    resources = json.loads(re.search(r"--resources='([^']*)'", cmd).group(1))  # type: ignore[union-attr]
    assert resources.get("desktop", 0) >= 1, cmd
    # The token the nodes share is copied to each of them.
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_the_dashboard_listens_on_loopback_only(config: dict[str, Any]) -> None:
    head = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head, head
