"""Approval policies: which actions ``apply_policy`` holds for a person, the operator's
refusal of acknowledged safety checks (at the API, 422), and the runner's hook: a step the
policy holds waits in ``approval_required``, runs as decided once approved, and fails with
the person's reason when refused."""

from __future__ import annotations

import asyncio
import doctest
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from actors._tasks import AgentTasks
from orchestrator import actions as a
from orchestrator import policy as policy_module
from orchestrator.config import settings
from orchestrator.domain import (
    Act,
    AgentInfo,
    AgentSpec,
    AgentStatus,
    AwaitApproval,
    Done,
    EventKind,
    TaskSpec,
    TaskState,
    new_id,
)
from orchestrator.errors import ConfigError
from orchestrator.policy import ApprovalPolicy, apply_policy, check_policy
from orchestrator.records import SQLiteStore
from tests.fakes.runtime import LocalRuntime
from tests.fakes.runtime_app import AUTH, api
from tests.fakes.task_desktop import StandInDesktop, StoreRecords

ROOT_RM = a.Shell(command="rm -rf /srv/data", user="root")
AS_AGENT = a.Shell(command="ls")


def test_the_module_examples_hold() -> None:
    failed, _ = doctest.testmod(policy_module, optionflags=doctest.ELLIPSIS)
    assert failed == 0


def test_by_default_nothing_waits_and_the_same_decision_comes_back() -> None:
    act = Act(actions=[ROOT_RM, a.TypeText(text="pw")])
    assert apply_policy(act, ApprovalPolicy()) is act
    assert AgentSpec(name="x").policy == ApprovalPolicy(safety_checks="fail", approve=[])


def test_shell_as_root_holds_the_whole_step_naming_the_rule_and_command() -> None:
    click = a.Click(x=1, y=2)
    act = Act(actions=[click, AS_AGENT, ROOT_RM], thought="clean up")
    held = apply_policy(act, ApprovalPolicy(approve=["shell_as_root"]))
    assert held == AwaitApproval(
        actions=[click, AS_AGENT, ROOT_RM],
        reason="shell as root needs a person's approval: rm -rf /srv/data",
        thought="clean up",
    )
    # a shell as the desktop user is not held by that rule, but by "shell"
    assert (
        apply_policy(Act(actions=[AS_AGENT]), ApprovalPolicy(approve=["shell_as_root"])).kind
        == "act"
    )
    assert apply_policy(Act(actions=[AS_AGENT]), ApprovalPolicy(approve=["shell"])).kind == (
        "await_approval"
    )


@pytest.mark.parametrize(
    ("rule", "action", "held"),
    [
        ("type", a.TypeText(text="hello"), True),
        ("type", a.KeyPress(keys=["ctrl", "s"]), False),
        ("keypress", a.KeyPress(keys=["ctrl", "s"]), True),
        ("keypress", a.Click(x=1, y=1), False),
        ({"text_pattern": "(?i)passw"}, a.TypeText(text="my PassWord is"), True),
        ({"text_pattern": "(?i)passw"}, a.TypeText(text="hello"), False),
        ({"text_pattern": r"\bsudo\b"}, a.Shell(command="sudo reboot"), True),
        ({"text_pattern": r"\bsudo\b"}, a.Click(x=1, y=1), False),
    ],
)
def test_each_rule_holds_what_it_names_and_nothing_else(
    rule: object, action: a.Action, held: bool
) -> None:
    policy = ApprovalPolicy.model_validate({"approve": [rule]})
    decision = apply_policy(Act(actions=[action]), policy)
    assert (decision.kind == "await_approval") is held


def test_every_matching_action_is_named_in_the_reason() -> None:
    act = Act(actions=[a.TypeText(text="x" * 500), a.KeyPress(keys=["Return"])])
    held = apply_policy(act, ApprovalPolicy(approve=["type", "keypress"]))
    assert isinstance(held, AwaitApproval)
    typing, key = held.reason.split("; ")
    assert typing == "typing needs a person's approval: " + "x" * 200 + "..."
    assert key == "a key press needs a person's approval: Return"


def test_decisions_other_than_act_pass_untouched() -> None:
    done = Done(result="ok")
    assert apply_policy(done, ApprovalPolicy(approve=["shell", "type"])) is done


def test_a_bad_rule_or_pattern_is_refused() -> None:
    with pytest.raises(ValidationError):
        ApprovalPolicy.model_validate({"approve": ["delete_everything"]})
    with pytest.raises(ValidationError, match="not a regular expression"):
        ApprovalPolicy.model_validate({"approve": [{"text_pattern": "("}]})
    with pytest.raises(ValidationError):
        ApprovalPolicy.model_validate({"safety_checks": "ignore"})


def test_the_sdk_sends_the_policy_with_the_spec() -> None:
    from orchestrator.sdk._http import agent_spec

    spec = agent_spec("ops", policy={"approve": ["shell_as_root"]})
    assert spec.policy == ApprovalPolicy(approve=["shell_as_root"])
    assert agent_spec("ops").policy == ApprovalPolicy()


def test_acknowledge_is_an_operator_opt_in() -> None:
    ack = ApprovalPolicy(safety_checks="acknowledge")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS"):
        check_policy(ack, allow_acknowledge=False)
    check_policy(ack, allow_acknowledge=True)
    check_policy(ApprovalPolicy(safety_checks="ask"), allow_acknowledge=False)


@pytest.fixture
def app(store: SQLiteStore) -> Iterator[tuple[TestClient, LocalRuntime]]:
    with api(store) as both:
        yield both


@pytest.fixture
def fresh_settings() -> Iterator[Callable[[], None]]:
    settings.cache_clear()
    yield settings.cache_clear
    settings.cache_clear()


def test_the_api_refuses_an_agent_acknowledging_checks_unless_allowed(
    app: tuple[TestClient, LocalRuntime],
    monkeypatch: pytest.MonkeyPatch,
    fresh_settings: Callable[[], None],
) -> None:
    client, rt = app
    spec = {"name": "a", "policy": {"safety_checks": "acknowledge"}}
    monkeypatch.delenv("ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS", raising=False)
    fresh_settings()
    r = client.post("/v1/agents", json=spec, headers=AUTH)
    assert r.status_code == 422, r.text
    assert "ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS" in r.json()["error"]["message"]
    assert rt.calls == []

    monkeypatch.setenv("ORCHESTRATOR_ALLOW_ACKNOWLEDGE_SAFETY_CHECKS", "true")
    fresh_settings()
    r = client.post("/v1/agents", json=spec, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["policy"]["safety_checks"] == "acknowledge"


# ---------------------------------------------------------------------- the runner's hook


class Host:
    """An ``AgentHost`` with a stand-in desktop and real records (no children)."""

    def __init__(self, records: StoreRecords, spec: AgentSpec) -> None:
        self.info = AgentInfo(
            id=new_id("agent"), path="t/u/ops", tenant="t", parent_id=None, spec=spec
        )
        self.desktop = StandInDesktop()
        self.children: dict[str, object] = {}
        self.tasks = AgentTasks(self, records)

    async def hire(self, spec: AgentSpec) -> AgentInfo:  # pragma: no cover - never delegates
        raise AssertionError("no hiring here")

    async def _set_status(self, status: AgentStatus, error: str | None = None) -> None:
        self.info = self.info.model_copy(update={"status": status, "error": error})


@pytest.fixture
def host(store: SQLiteStore) -> Iterator[Host]:
    spec = AgentSpec(name="ops", policy=ApprovalPolicy(approve=["shell_as_root"]))
    h = Host(StoreRecords(store), spec)
    yield h
    h.desktop.close()


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():  # noqa: ASYNC110 - polling a condition, with a deadline
            await asyncio.sleep(0.005)


SCRIPT = {
    "steps": [
        {"type": "shell", "command": "echo first > one.txt"},
        {"type": "shell", "command": "echo root > two.txt", "user": "root"},
    ]
}


@pytest.mark.parametrize("approved", [True, False])
async def test_a_step_the_policy_holds_waits_and_runs_only_once_approved(
    host: Host, store: SQLiteStore, approved: bool
) -> None:
    task = await host.tasks.assign(TaskSpec(description="d", script=SCRIPT))
    await until(lambda: host.tasks.get(task.id).state == TaskState.APPROVAL_REQUIRED)
    waiting = host.tasks.get(task.id).waiting
    assert waiting is not None and waiting.screenshot is not None
    assert waiting.actions == [a.Shell(command="echo root > two.txt", user="root")]
    assert waiting.reason == "shell as root needs a person's approval: echo root > two.txt"
    # the step before it ran; the held one did not
    assert (host.desktop.home / "one.txt").exists()
    assert not (host.desktop.home / "two.txt").exists()

    if approved:
        await host.tasks.approve(task.id, True)
    else:
        await host.tasks.approve(task.id, False, "not as root")
    ended = await host.tasks.wait(task.id)
    steps = [e.data for e in store.events(task_id=task.id) if e.kind == EventKind.STEP]
    if approved:
        assert ended.state == TaskState.SUCCEEDED, ended.error
        assert (host.desktop.home / "two.txt").read_text() == "root\n"
        assert steps[-1]["result"]["ok"] is True
    else:
        assert ended.state == TaskState.FAILED
        assert not (host.desktop.home / "two.txt").exists()
        assert steps[-1]["result"]["error"] == "a person refused: not as root"
        assert "a person refused: not as root" in (ended.error or "")
    # approved or not, the step was held once (an approved step is not held again)
    held = [
        e.data
        for e in store.events(task_id=task.id)
        if e.kind == EventKind.MODEL and e.data.get("kind") == "await_approval"
    ]
    assert len(held) == 1
