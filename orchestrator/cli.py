"""The ``orchestrator`` command.

Add a command group with ``@main.group()`` (or a command with ``@main.command()``); errors
from ``orchestrator.errors`` are printed as ``error: <message>`` with exit status 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._extras import RUNTIME_HINT, RUNTIME_MODULES
from ._terminal import echo
from .errors import ConfigError, OrchestratorError

__all__ = ["main"]


class _Group(click.Group):
    """A click group that reports the runtime's own errors without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchestratorError as e:
            first, _, rest = str(e).strip().partition("\n")
            echo(f"error: {first}", err=True)  # messages carry tenants' names and text
            if rest:  # e.g. the output of a failing build step
                echo(rest, err=True)
            sys.exit(1)
        except ModuleNotFoundError as e:
            if e.name is None or e.name.partition(".")[0] not in RUNTIME_MODULES:
                raise
            # A light install (the SDK alone) running a command that needs the runtime.
            why = str(e) if RUNTIME_HINT in str(e) else f"this needs the runtime: {RUNTIME_HINT}"
            echo(f"error: {why}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="orchestrator")
def main() -> None:
    """An actor-model multi-agent runtime where every agent owns a Linux desktop."""


@main.group(cls=_Group)
def image() -> None:
    """The desktop image."""


@image.command("build")
@click.option(
    "--base",
    "base_image",
    metavar="IMAGE",
    default=None,
    help="Base image (default debian:bookworm-slim; without a registry, a Debian "
    "bookworm base is debootstrapped from this machine's apt mirror).",
)
@click.option("--force", is_flag=True, help="Rebuild even if this tag exists (no layer cache).")
@click.option(
    "--mirror",
    metavar="URL",
    default=None,
    help="Debian mirror for debootstrap (default: the one in this machine's apt sources).",
)
def image_build(base_image: str | None, force: bool, mirror: str | None) -> None:
    """Build the desktop image (a no-op when this checkout's image is already built)."""
    from .image import build_image

    tag = build_image(
        base_image=base_image,
        force=force,
        mirror=mirror,
        progress=lambda line: echo(line, err=True),
    )
    click.echo(tag)


@image.command("tag")
def image_tag() -> None:
    """Print the desktop image tag of this checkout (a hash of desktop_image/)."""
    from .image import image_tag as tag

    click.echo(tag())


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("out"), show_default=True)
def demo(out: Path) -> None:
    """Start a desktop, open a terminal and the browser with GUI actions, run a command,
    and save a screenshot."""
    import asyncio

    from .demo import run_demo

    asyncio.run(run_demo(out))


@main.command()
@click.argument("plan")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to save screenshots [default: out/<workflow name>, or out/run].",
)
@click.option(
    "--tenant",
    default=None,
    help="Whose agents these are [default: the local cluster's (`orchestrator up`), else "
    "the workflow file's, else local].",
)
@click.option("--keep", is_flag=True, help="Keep the agents (and desktops) when done.")
@click.option(
    "--address",
    default=None,
    help="Ray cluster address [default: the local cluster of `orchestrator up` when one runs, "
    "else a Ray of its own for this run].",
)
@click.option(
    "--family",
    default=None,
    metavar="FAMILY",
    help="For a task in words: how the model speaks computer use, one of chat-tools, "
    "openai-responses, anthropic, uitars, qwen-vl, opencua [default: chat-tools].",
)
@click.option(
    "--model",
    default=None,
    help="For a task in words: the model's name [default: ORCHESTRATOR_MODEL, or "
    "ORCHESTRATOR_ANTHROPIC_MODEL for anthropic].",
)
def run(
    plan: str,
    out: Path | None,
    tenant: str | None,
    keep: bool,
    address: str | None,
    family: str | None,
    model: str | None,
) -> None:
    """Run PLAN: a workflow file (YAML), or a task in words for a model-driven agent
    (needs an OpenAI-compatible model: OPENAI_BASE_URL / OPENAI_API_KEY / ORCHESTRATOR_MODEL;
    with --family anthropic, ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY).

    With a local cluster up, the run is one of its tenant's: `orchestrator agents`, `tasks`,
    `watch` and the dashboard show it."""
    import asyncio
    import os

    from . import local
    from .config import ray_env
    from .domain import AgentSpec, TaskSpec
    from .workflow import Workflow, load_workflow

    if Path(plan).is_file():
        if family is not None or model is not None:
            raise ConfigError("--family and --model are for a task in words, not a workflow file")
        wf = load_workflow(Path(plan))
        out = out or Path("out") / Path(plan).stem
    elif plan.endswith((".yaml", ".yml")):
        raise ConfigError(f"no such workflow file: {plan}")
    else:
        wf = Workflow(
            agent=AgentSpec(name="user", role="generalist", brain=_words_brain(family, model)),
            task=TaskSpec(description=plan),
        )
        from .brains import make_brain

        make_brain(wf.agent.brain)  # fail here, not in an actor, when no model is configured

    cluster = local.current() if address is None and ray_env().address is None else None
    if cluster is not None:
        click.echo(f"running on the local cluster at {cluster.ray_address}", err=True)
        address = cluster.ray_address
        os.environ.update(local.driver_env())
        tenant = tenant or local.TENANT
    if tenant is not None:
        from pydantic import ValidationError

        try:
            wf = Workflow.model_validate({**wf.model_dump(), "tenant": tenant})
        except ValidationError as e:
            raise ConfigError(f"--tenant {tenant!r}: {e.errors()[0]['msg']}") from None
    out = out or Path("out") / "run"

    async def go() -> int:
        from actors import Runtime, run_workflow

        rt = Runtime.connect(address)
        done = await run_workflow(rt, wf, out_dir=out, say=echo, keep=keep)
        return 0 if done.state.value == "succeeded" else 1

    sys.exit(asyncio.run(go()))


def _words_brain(family: str | None, model: str | None) -> Any:
    """The brain of a task in words: a model of ``family`` (default chat-tools)."""
    from .domain import FAMILIES, BrainConfig

    if family is None:
        return BrainConfig(kind="openai", model=model)
    if family not in FAMILIES:
        raise ConfigError(f"--family {family!r}: not one of {', '.join(FAMILIES)}")
    kind = "anthropic" if family == "anthropic" else "openai"
    return BrainConfig(kind=kind, family=family, model=model)


@main.group(cls=_Group)
def desktops() -> None:
    """Desktop containers on this machine."""


@desktops.command("reap")
def desktops_reap() -> None:
    """Remove desktops whose owner (process or agent) is gone."""
    from .desktop import reap

    names = reap(min_age_s=0)
    click.echo(
        f"removed {len(names)} orphaned desktop(s)" + (": " + ", ".join(names) if names else "")
    )


@main.command()
@click.option("--port", default=8000, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--keys-file",
    default=None,
    help="API keys, one `tenant:key` or `tenant:sha256:<hex>` a line "
    "(default: ORCHESTRATOR_API_KEYS / ORCHESTRATOR_API_KEYS_FILE).",
)
@click.option("--address", default=None, help="Ray cluster address (default: start one locally).")
def serve(port: int, keys_file: str | None, address: str | None) -> None:
    """Serve the HTTP API (Ray Serve, loopback only) until interrupted. OpenAPI at /docs."""
    from actors import Runtime
    from serve_app import deploy

    Runtime.connect(address)
    click.echo(f"serving on http://127.0.0.1:{port} (OpenAPI at /docs); ctrl+c to stop")
    deploy("127.0.0.1", port, keys_file=keys_file, blocking=True)


@main.command()
@click.option("--port", default=8000, show_default=True, help="The API's port on 127.0.0.1.")
@click.option(
    "--dashboard-port", default=8265, show_default=True, help="Ray's dashboard on 127.0.0.1."
)
@click.option(
    "--desktops",
    type=click.IntRange(min=1),
    default=None,
    help="Agents (desktops) at once [default: as many as fit in memory].",
)
@click.option(
    "--autoscale",
    is_flag=True,
    help="Worker nodes come and go on this machine (Ray's autoscaler) as agents wait for "
    "desktops; --desktops is then the head's (default 2).",
)
@click.option(
    "--max-workers",
    type=click.IntRange(1, 32),
    default=3,
    show_default=True,
    help="With --autoscale: most worker nodes at once.",
)
@click.option(
    "--worker-desktops",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="With --autoscale: desktops (agents) per worker node.",
)
@click.option(
    "--idle-timeout-s",
    type=click.FloatRange(6, 86400),
    default=60.0,
    show_default=True,
    help="With --autoscale: a worker node without agents for this long is removed.",
)
def up(
    port: int,
    dashboard_port: int,
    desktops: int | None,
    autoscale: bool,
    max_workers: int,
    worker_desktops: int,
    idle_timeout_s: float,
) -> None:
    """Start a local cluster: a Ray head and the HTTP API, on 127.0.0.1 only (or show the
    running one). Its state and API key are kept in ORCHESTRATOR_DATA_DIR."""
    from . import local

    scaling = None
    if autoscale:
        scaling = local.Autoscale(
            head_desktops=2 if desktops is None else desktops,
            max_workers=max_workers,
            worker_desktops=worker_desktops,
            idle_timeout_s=idle_timeout_s,
        )
    running = local.current()
    if running is None:
        click.echo("starting a Ray head and the API (some seconds) ...", err=True)
    cluster = local.up(
        api_port=port, dashboard_port=dashboard_port, desktops=desktops, autoscale=scaling
    )
    if running is not None:
        click.echo("a local cluster is running already:", err=True)
        if autoscale and running.autoscale is None:
            click.echo("(without --autoscale: `orchestrator down` first to change that)", err=True)
    for line in local.describe(cluster):
        click.echo(line)


@main.command()
def down() -> None:
    """Stop the local cluster `orchestrator up` started: the API, the agents and their
    desktops, and Ray (never another Ray cluster on this machine)."""
    from . import local

    if local.down():
        click.echo("stopped the local cluster")
    else:
        click.echo("no local cluster is running")


from ._cli_api import register as _register_api_commands  # noqa: E402 - after the group exists

_register_api_commands(main)

from ._cli_gc import register as _register_gc  # noqa: E402 - after the group exists

_register_gc(main)

from ._cli_keys import register as _register_keys  # noqa: E402 - after the group exists

_register_keys(main)


if __name__ == "__main__":
    main()
