"""Workflow files: a YAML plan that names a top-level agent and the task to give it.

Example (``examples/web_server.yaml`` is a full one; ``examples/review.yaml`` gives a
subtask a reviewer, with review rounds: see ``orchestrator.brains.Script``)::

    tenant: demo
    agent: {name: admin, role: system administrator, desktop: {network: egress}}
    task:
      description: Install and configure a web server.
      script:                     # the agent's scripted plan (orchestrator.brains.Script)
        subtasks: [...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` would let a few hundred bytes expand to gigabytes
    (a workflow comes from any tenant, over HTTP too)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.constructor.ConstructorError(
                None, None, "aliases (*name) are not allowed in a workflow", mark
            )
        return super().compose_node(parent, index)


def load_workflow(source: str | Path) -> Workflow:
    """Parse and validate a workflow file (or YAML text); errors name the bad field."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError(f"workflow is not valid YAML: {e}") from e
    except RecursionError:
        raise ConfigError("workflow is not valid YAML: nested too deeply") from None
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
