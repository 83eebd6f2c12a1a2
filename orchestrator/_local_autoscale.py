"""An autoscaling local cluster (``orchestrator up --autoscale``): its Ray head runs Ray's
autoscaler with the fake multi-node provider, which starts and stops real raylets on this
machine, each declaring ``worker_desktops`` units of the ``desktop`` resource, as agents wait
for a desktop (their pending actors are the demand) and as nodes sit idle.

The nodes share this machine's Docker engine and desktop image, so a new node can run
desktops as soon as its raylet is up (on a real cluster, ``cluster.yaml``'s setup commands
run before ``ray start``, so the same holds). The head's processes pass
``ORCHESTRATOR_AUTOSCALE=1`` to every node, so a new agent waits long enough for a node to
start (``Settings.schedule_timeout_s``).

Example:
    >>> opts = Autoscale(max_workers=3, worker_desktops=2, idle_timeout_s=20)
    >>> config = autoscaling_config(opts, "127.0.0.1:6390")
    >>> config["available_node_types"]["desktop-worker"]["resources"]
    {'CPU': 1, 'desktop': 2}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .config import RAY_LOOPBACK_ENV

__all__ = [
    "CONFIG_FILE",
    "HEAD_TYPE",
    "WORKER_TYPE",
    "Autoscale",
    "autoscaling_config",
    "head_env",
    "write_config",
]

CONFIG_FILE = "autoscaling.yaml"
"""The autoscaler's config, in the data directory (JSON, which is YAML)."""

HEAD_TYPE = "ray.head.default"
"""The fake provider's name of the head's node type."""

WORKER_TYPE = "desktop-worker"
"""The node type the autoscaler adds: ``worker_desktops`` desktops each."""


class Autoscale(BaseModel):
    """How an autoscaling local cluster grows and shrinks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    head_desktops: int = Field(default=2, ge=0, le=256)
    """Units of ``desktop`` on the head (agents it runs itself)."""
    max_workers: int = Field(default=3, ge=1, le=32)
    """Most worker nodes at once."""
    worker_desktops: int = Field(default=2, ge=1, le=256)
    """Units of ``desktop`` each worker node declares."""
    worker_cpus: int = Field(default=1, ge=0, le=256)
    """Logical CPUs each worker node declares (agents ask for none; Ray's own tasks may)."""
    idle_timeout_s: float = Field(default=60.0, ge=6.0, le=86400.0)
    """How long a worker node with no agent stays before the autoscaler removes it."""
    update_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often the autoscaler looks at the demand and the nodes."""


def autoscaling_config(opts: Autoscale, gcs_address: str) -> dict[str, Any]:
    """The autoscaler's cluster config for the head whose GCS answers at ``gcs_address``
    (without it, new nodes look for port 6379)."""
    return {
        "cluster_name": "orchestrator-local",
        "max_workers": opts.max_workers,
        # Start every node the demand asks for at once (not at most as many as are up).
        "upscaling_speed": float(opts.max_workers),
        "idle_timeout_minutes": opts.idle_timeout_s / 60.0,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,
            "gcs_address": gcs_address,
        },
        "auth": {},
        "available_node_types": {
            HEAD_TYPE: {"resources": {}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": {"CPU": opts.worker_cpus, "desktop": opts.worker_desktops},
                "node_config": {},
                "min_workers": 0,
                "max_workers": opts.max_workers,
            },
        },
        "head_node_type": HEAD_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def write_config(data_dir: Path, opts: Autoscale, gcs_address: str) -> Path:
    """Write the autoscaler's config into ``data_dir`` (mode 0600); its path."""
    path = data_dir / CONFIG_FILE
    path.write_text(json.dumps(autoscaling_config(opts, gcs_address), indent=2) + "\n")
    path.chmod(0o600)
    return path


def head_env(opts: Autoscale) -> dict[str, str]:
    """What the head's ``ray start`` needs in its environment (its autoscaler and every node
    it starts inherit it): the fake provider enabled, the update interval, the runtime's
    ``ORCHESTRATOR_AUTOSCALE``, and ``RAY_LOOPBACK_ENV`` said here, not left to the caller's
    environment: the fake provider starts each worker's raylet, object store and dashboard
    agent inside the autoscaler's process, and only this keeps their listeners on 127.0.0.1."""
    return {
        **RAY_LOOPBACK_ENV,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": f"{opts.update_interval_s:g}",
        "ORCHESTRATOR_AUTOSCALE": "1",
    }
