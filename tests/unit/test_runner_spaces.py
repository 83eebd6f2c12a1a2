"""The runner and a brain's coordinate space: screenshots are sent in the size the brain asks
for, the brain sees the screen's size, and the actions it returns are carried out in screen
pixels; a ``Retry`` a brain lets through fails the task with its error.

The brain here is a small honest implementation of the ``Brain`` interface whose model
"answers" in the space of the image it was sent, mapped with ``orchestrator.coords``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors._runner import TaskRunner
from orchestrator import actions as a
from orchestrator.brains import Brain, BrainContext, Observation
from orchestrator.coords import Mapper
from orchestrator.domain import Act, Decision, Done, Plan, Retry, TaskSpec, TaskState, Triage
from orchestrator.records import SQLiteStore
from tests.fakes.task_desktop import LocalHost, StandInDesktop, StoreRecords, new_task


class HalfSizeBrain(Brain):
    """Asks for screenshots at half the screen's size and clicks the centre of its image."""

    def __init__(self, then: Decision | None = None) -> None:
        super().__init__()
        self.seen: list[Observation] = []
        self.asked: list[tuple[int, int]] = []
        self._then = then

    def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
        self.asked.append(screen)
        return (screen[0] // 2, screen[1] // 2)

    async def triage(self, ctx: BrainContext, obs: Observation) -> Triage:
        self.seen.append(obs)
        return Triage(decision="do", reason="small")

    async def plan(self, ctx: BrainContext, obs: Observation) -> Plan:
        raise AssertionError("never delegates")

    async def step(self, ctx: BrainContext, obs: Observation) -> Decision:
        self.seen.append(obs)
        if ctx.history:
            return self._then or Done(result="clicked")
        mapper = Mapper(model_size=obs.size, screen_size=obs.screen_size)
        x, y = mapper.point(obs.width // 2, obs.height // 2)
        return Act(actions=[a.Click(x=x, y=y)])

    async def check(self, ctx: BrainContext, obs: Observation, results: dict[str, str]) -> Decision:
        raise AssertionError("never checks")


@pytest.fixture
def records(store: SQLiteStore) -> StoreRecords:
    return StoreRecords(store)


@pytest.fixture
def desk() -> Iterator[StandInDesktop]:
    d = StandInDesktop(size=(200, 120))
    yield d
    d.close()


async def run(records: StoreRecords, desk: StandInDesktop, brain: Brain) -> TaskRunner:
    task = await new_task(records, TaskSpec(description="click the middle"))
    return TaskRunner(task, "tester", "t/u/boss", desk, brain, LocalHost(records), records)


async def test_screenshots_come_in_the_brains_size_and_actions_in_screen_pixels(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    brain = HalfSizeBrain()
    runner = await run(records, desk, brain)

    ended = await runner.run()

    assert (ended.state, ended.result) == (TaskState.SUCCEEDED, "clicked")
    assert brain.asked and set(brain.asked) == {(200, 120)}
    assert {(o.width, o.height) for o in brain.seen} == {(100, 60)}
    assert {o.screen_size for o in brain.seen} == {(200, 120)}
    # the centre of the 100x60 image, pixel (50, 30), is screen pixel (101, 61)
    assert desk.actions == [a.Click(x=101, y=61)]
    assert desk.screen.getpixel((101, 61)) == (255, 255, 255)


async def test_a_brain_that_asks_for_the_screens_own_size_gets_it_unscaled(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    class Native(HalfSizeBrain):
        def image_size(self, screen: tuple[int, int]) -> tuple[int, int]:
            return screen

    brain = Native()
    ended = await (await run(records, desk, brain)).run()

    assert ended.state == TaskState.SUCCEEDED
    assert {(o.width, o.height, *o.screen_size) for o in brain.seen} == {(200, 120, 200, 120)}
    assert desk.actions == [a.Click(x=100, y=60)]


async def test_a_retry_that_reaches_the_runner_fails_the_task_with_its_error(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    brain = HalfSizeBrain(then=Retry(error="unknown action 'fly'"))

    ended = await (await run(records, desk, brain)).run()

    assert ended.state == TaskState.FAILED
    assert ended.error == "the model's reply could not be used: unknown action 'fly'"


async def test_a_scripted_report_longer_than_a_result_may_be_is_cut_not_a_crash(
    records: StoreRecords, desk: StandInDesktop
) -> None:
    from orchestrator.brains import make_brain
    from orchestrator.domain import MAX_RESULT_CHARS, BrainConfig

    script = {"steps": [{"type": "shell", "command": "head -c 30000 /dev/zero | tr '\\0' x"}]}
    task = await new_task(records, TaskSpec(description="print a lot", script=script))
    brain = make_brain(BrainConfig(kind="scripted", script=script))
    runner = TaskRunner(task, "tester", "t/u/boss", desk, brain, LocalHost(records), records)

    ended = await runner.run()

    assert ended.state == TaskState.SUCCEEDED
    assert ended.result is not None and len(ended.result) == MAX_RESULT_CHARS
    assert ended.result.endswith("…") and set(ended.result[:-1]) == {"x"}
