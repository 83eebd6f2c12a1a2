"""Workflow files: a YAML plan that names a top-level agent and the task to give it.

Example (``examples/web_server.yaml`` is a full one)::

    tenant: demo
    agent: {name: admin, role: system administrator, desktop: {network: egress}}
    task:
      description: Install and configure a web server.
      script:                     # the agent's scripted plan (orchestrator.brains.Script)
        subtasks: [...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .domain import AgentSpec, TaskSpec
from .errors import ConfigError

__all__ = ["Workflow", "load_workflow"]


class Workflow(BaseModel):
    """A top-level agent and its task."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    tenant: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")] = "local"
    """Whose agents these are."""
    agent: AgentSpec
    """The top-level agent to create."""
    task: TaskSpec
    """What it is asked to do."""


def load_workflow(source: str | Path) -> Workflow:
    """Parse and validate a workflow file (or YAML text); errors name the bad field."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"workflow is not valid YAML: {e}") from e
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as e:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        raise ConfigError("invalid workflow:\n  " + "\n  ".join(lines)) from e
    if wf.task.script is not None:
        from .brains import Script

        try:
            Script.model_validate(wf.task.script)
        except ValidationError as e:
            lines = [
                f"task.script.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors()
            ]
            raise ConfigError("invalid workflow script:\n  " + "\n  ".join(lines)) from e
    return wf
