"""Quotas held below the API: the runtime refuses what a tenant's quotas do not allow, also
when the agent itself hires while delegating (no route is involved there)."""

from __future__ import annotations

import pytest

from orchestrator.domain import TaskSpec, TaskState
from orchestrator.errors import QuotaExceededError
from orchestrator.tenants import Quotas

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HELLO = {"steps": [{"type": "shell", "command": "echo hi"}]}


async def test_a_hire_while_delegating_is_held_to_the_desktop_quota(agents) -> None:
    await agents.runtime.recorder.set_quotas.remote(agents.tenant, Quotas(max_desktops=1))
    boss = await agents.create("boss")
    with pytest.raises(QuotaExceededError, match=r"has 1 live desktops .*quota is 1"):
        await agents.create("second")  # the runtime itself refuses, no route involved
    script = {
        "subtasks": [{"id": "hello", "role": "tester", "description": "say hi", "script": HELLO}]
    }
    spec = TaskSpec(description="delegate", script=script, max_attempts=1)
    done = await agents.run(boss.id, spec, 90)
    assert done.state == TaskState.FAILED
    assert "could not hire a tester: QuotaExceededError: quota exceeded" in (done.error or "")
    assert "(max_desktops)" in (done.error or "")
    assert agents.container_paths(boss.path) == {boss.path}  # no specialist desktop started
    # More room: the same delegation now hires and succeeds.
    await agents.runtime.recorder.set_quotas.remote(agents.tenant, Quotas(max_desktops=2))
    done = await agents.run(boss.id, spec, 90)
    assert done.state == TaskState.SUCCEEDED, done.error


async def test_a_replica_off_the_recorders_node_reads_the_keys_from_the_recorder(agents) -> None:
    """What a replica on another node does (no local file): ask the recorder actor."""
    from actors import RecorderRef
    from orchestrator.domain import new_id
    from orchestrator.tenants import ApiKey, digest, make_key

    remote = RecorderRef(local_reads=False)
    key = make_key()
    record = ApiKey(id=new_id("key"), tenant=agents.tenant, name="remote")
    assert await remote.add_api_key(record, digest(key)) == record
    assert (agents.tenant, digest(key)) in await remote.active_api_keys()
    revoked = await remote.revoke_api_key(record.id)
    assert revoked is not None and revoked.revoked_at is not None
    assert (agents.tenant, digest(key)) not in await remote.active_api_keys()
    listed = await remote.api_keys(agents.tenant)
    assert [k.id for k in listed] == [record.id]
