"""Replay of real model replies recorded by others (tests/fixtures/replay): each goes through
``parse_reply`` and must give the decision and the screen pixels computed by hand in its file.

Nothing is started: pure parsing. See tests/fakes/replay.py for the fixture format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.actions import Click, KeyPress
from orchestrator.brains import parse_reply
from orchestrator.domain import Act, Done, Retry
from tests.fakes.replay import FIXTURES, Expect, Fixture, check, load_fixtures, points

_FIXTURES = load_fixtures()


def test_enough_real_replies_across_families() -> None:
    families = {f.family for f in _FIXTURES}
    assert len(_FIXTURES) >= 12, [f.name for f in _FIXTURES]
    assert len(families) >= 4, families
    assert len({f.name for f in _FIXTURES}) == len(_FIXTURES)


@pytest.mark.parametrize("fixture", _FIXTURES, ids=lambda f: f.name)
def test_header_is_complete(fixture: Fixture) -> None:
    text = (FIXTURES / f"{fixture.name}.yaml").read_text(encoding="utf-8")
    assert text.startswith("source:\n")
    source = fixture.source
    assert len(source.commit) == 40 and int(source.commit, 16) >= 0
    assert "/" in source.repository and source.path and source.where


@pytest.mark.parametrize("fixture", _FIXTURES, ids=lambda f: f.name)
def test_replay_gives_the_expected_decision(fixture: Fixture) -> None:
    decision = parse_reply(fixture.family, fixture.reply, fixture.model_size, fixture.screen_size)
    problems = check(decision, fixture.expect)
    assert not problems, f"{fixture.name}: {problems}"
    width, height = fixture.screen_size
    for x, y in points(decision):
        assert 0 <= x < width and 0 <= y < height, f"{fixture.name}: ({x}, {y}) off the screen"


def test_loader_refuses_an_incomplete_header(tmp_path: Path) -> None:
    good = (FIXTURES / "uitars-hotkey-paste.yaml").read_text(encoding="utf-8")
    (tmp_path / "uitars-x.yaml").write_text(good.replace('"239b65', '"239b6'), encoding="utf-8")
    with pytest.raises(ValueError, match="uitars-x.yaml"):
        load_fixtures(tmp_path)
    (tmp_path / "uitars-x.yaml").write_text("# a comment first\n" + good, encoding="utf-8")
    with pytest.raises(ValueError, match="must start with its source"):
        load_fixtures(tmp_path)
    (tmp_path / "uitars-x.yaml").write_text(good.replace('family: "uitars"', 'family: "qwen-vl"'))
    with pytest.raises(ValueError, match="must start with its family"):
        load_fixtures(tmp_path)


def test_check_catches_a_wrong_point_a_wrong_kind_and_a_missing_action() -> None:
    expect = Expect(kind="act", actions=[{"type": "click", "x": 10, "y": 20}])
    assert not check(Act(actions=[Click(x=10, y=20)]), expect)
    assert check(Act(actions=[Click(x=11, y=20)]), expect)
    assert check(Retry(error="no action"), expect)
    assert check(Done(), expect)
    assert check(Act(actions=[Click(x=10, y=20), KeyPress(keys=["a"])]), expect)
    partial = Expect(kind="act", expect_partial=True, actions=[{"type": "keypress"}])
    assert not check(Act(actions=[Click(x=10, y=20), KeyPress(keys=["a"])]), partial)
    assert check(Act(actions=[Click(x=10, y=20)]), partial)
