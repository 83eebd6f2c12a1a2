"""``orchestrator keys``: tenants' API keys and quotas on a running cluster, no restart.

The commands talk to the cluster's recorder through Ray (the local cluster of
``orchestrator up`` by default, else ``--address`` / ``RAY_ADDRESS``), not through the HTTP
API: whoever can reach Ray runs code on the cluster anyway, so Ray access is the operator's
credential already, and no HTTP route exists that a leaked tenant key (or an admin key to
guard) could use to mint keys. A key is made here, printed once, and only its sha256 digest
travels to the records; every API replica reads the keys in force from there within seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from pydantic import TypeAdapter, ValidationError

from .errors import ConfigError, NotFoundError
from .tenants import ApiKey, Quotas, Tenant, digest, make_key

__all__ = ["add_key", "register"]

T = TypeVar("T")

UNLIMITED = ("unlimited", "none")


class _Limit(click.ParamType[int | str]):
    """A quota on the command line: a count, or ``unlimited``."""

    name = "N|unlimited"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in UNLIMITED:
            return UNLIMITED[0]
        try:
            n = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a count nor 'unlimited'", param, ctx)
        if n < 0:
            self.fail(f"{n} is negative", param, ctx)
        return n


def _quota_options(fn: Any) -> Any:
    for flag, what in reversed(
        [
            ("--max-agents", "live top-level agents"),
            ("--max-desktops", "live agents at any level (each has a desktop)"),
            ("--max-running-tasks", "tasks it gave that are pending or running"),
        ]
    ):
        fn = click.option(flag, type=_Limit(), default=None, help=f"Quota: {what}.")(fn)
    return fn


def _tenant(name: str) -> str:
    try:
        tenant: str = TypeAdapter(Tenant).validate_python(name)
    except ValidationError:
        raise ConfigError(
            f"bad tenant name {name!r}: letters, digits, '_', '.', '-' (up to 63)"
        ) from None
    return tenant


def _quotas(**given: Any) -> Quotas:
    """The quotas given on the command line (only those: the others stay as they are)."""
    values = {k: (None if v == UNLIMITED[0] else v) for k, v in given.items() if v is not None}
    try:
        return Quotas(**values)
    except ValidationError as e:
        raise ConfigError(f"bad quota: {e.errors()[0]['msg']}") from None


_address = click.option(
    "--address",
    default=None,
    help="Ray cluster address [default: the local cluster of `orchestrator up`, else RAY_ADDRESS].",
)


def _run(address: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(recorder)`` (a coroutine function) against the cluster's recorder."""
    import os

    from . import local
    from .config import ray_env

    if address is None and ray_env().address is None:
        cluster = local.current()
        if cluster is None:
            raise ConfigError(
                "no cluster to manage: start one with `orchestrator up`, or pass --address "
                "(or set RAY_ADDRESS)"
            )
        address = cluster.ray_address
        os.environ.update(local.driver_env())

    from actors import Runtime, init_ray

    init_ray(address)

    async def go() -> T:
        return await work(Runtime.shared().recorder)

    return asyncio.run(go())


async def add_key(
    recorder: Any, tenant: str, name: str = "", quotas: Quotas | None = None
) -> tuple[str, ApiKey, Quotas]:
    """Make a key for ``tenant``, store its digest (and the quotas given) in the records;
    returns the key (shown once, never stored), its record and the tenant's quotas."""
    from .domain import new_id

    try:
        record = ApiKey(id=new_id("key"), tenant=_tenant(tenant), name=name)
    except ValidationError as e:
        raise ConfigError(f"bad key name: {e.errors()[0]['msg']}") from None
    key = make_key()
    stored: ApiKey = await recorder.add_api_key.remote(record, digest(key))
    update = quotas or Quotas()
    now: Quotas = await (
        recorder.set_quotas.remote(tenant, update)
        if update.model_fields_set
        else recorder.quotas.remote(tenant)
    )
    return key, stored, now


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def register(main: click.Group) -> None:
    """Add the ``keys`` group to the ``orchestrator`` command."""

    @main.group(cls=type(main))
    def keys() -> None:
        """Tenants' API keys and quotas on the running cluster (no restart needed)."""

    @keys.command("add")
    @click.argument("tenant")
    @click.option("--name", default="", help="A label: who or what uses the key.")
    @_quota_options
    @_address
    def keys_add(
        tenant: str,
        name: str,
        max_agents: Any,
        max_desktops: Any,
        max_running_tasks: Any,
        address: str | None,
    ) -> None:
        """Make an API key for TENANT and print it (once: only its hash is kept). Quotas
        given here are the tenant's (for all its keys); the API takes the key within
        seconds."""
        tenant = _tenant(tenant)
        quotas = _quotas(
            max_agents=max_agents, max_desktops=max_desktops, max_running_tasks=max_running_tasks
        )
        made: tuple[str, ApiKey, Quotas] = _run(address, lambda r: add_key(r, tenant, name, quotas))
        key, record, now = made
        click.echo(key)
        click.echo(
            f"key {record.id} for tenant {record.tenant!r}: shown this once, store it now; "
            f"revoke it with `orchestrator keys revoke {record.id}`. Quotas: {now}",
            err=True,
        )

    @keys.command("list")
    @click.option("--tenant", default=None, help="Only this tenant's keys.")
    @click.option("--active", is_flag=True, help="Only keys not revoked.")
    @_address
    def keys_list(tenant: str | None, active: bool, address: str | None) -> None:
        """List keys (ids, tenants, names, created and revoked times; never the keys)."""
        found: list[ApiKey] = _run(
            address, lambda r: r.api_keys.remote(tenant, include_revoked=not active)
        )
        click.echo(f"{'ID':<16}  {'TENANT':<20}  {'CREATED':<19}  {'REVOKED':<19}  NAME")
        for k in found:
            click.echo(
                f"{k.id:<16}  {k.tenant:<20}  {_when(k.created_at):<19}  "
                f"{_when(k.revoked_at):<19}  {k.name}"
            )

    @keys.command("revoke")
    @click.argument("key_id")
    @_address
    def keys_revoke(key_id: str, address: str | None) -> None:
        """Revoke the key KEY_ID: every API replica refuses it within 5 s."""
        record: ApiKey | None = _run(address, lambda r: r.revoke_api_key.remote(key_id))
        if record is None:
            raise NotFoundError(f"no key {key_id} (see `orchestrator keys list`)")
        click.echo(f"revoked {record.id} (tenant {record.tenant!r}) at {_when(record.revoked_at)}")

    @keys.command("quota")
    @click.argument("tenant")
    @_quota_options
    @_address
    def keys_quota(
        tenant: str,
        max_agents: Any,
        max_desktops: Any,
        max_running_tasks: Any,
        address: str | None,
    ) -> None:
        """Show TENANT's quotas, or set those given (N, or `unlimited`); in force at once
        for new agents and tasks (running ones are not stopped)."""
        tenant = _tenant(tenant)
        update = _quotas(
            max_agents=max_agents, max_desktops=max_desktops, max_running_tasks=max_running_tasks
        )
        now: Quotas = _run(
            address,
            lambda r: (
                r.set_quotas.remote(tenant, update)
                if update.model_fields_set
                else r.quotas.remote(tenant)
            ),
        )
        click.echo(f"tenant {tenant!r}: {now}")
