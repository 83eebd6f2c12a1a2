"""What the model is told: the instructions of each decision and the task as text.

Kept apart from the API plumbing so the words can be tuned without touching the protocol.
"""

from __future__ import annotations

from ._base import BrainContext, Observation

__all__ = [
    "PLAN",
    "TRIAGE",
    "acting_instructions",
    "check_text",
    "task_text",
]

_WHO = (
    "You are an agent with this expertise: {role}. You work on your own Linux desktop "
    "(agent {path}), seen in screenshots of {width}x{height} pixels."
)

TRIAGE = (
    "Decide how to handle the task below. Answer `do` to carry it out yourself on your "
    "desktop, or `delegate` to split it into subtasks for specialists with other expertise. "
    "Delegate only when the task clearly needs several distinct kinds of expertise or "
    "independent parts that gain from running in parallel; otherwise do it yourself. "
    "Reply with the JSON object the schema describes: `decision` and a one-sentence `reason`."
)

PLAN = (
    "Split the task below into subtasks, each for one specialist. For each subtask give a "
    "short `id` (letters, digits, `_`, `.` or `-`), the `role` (the expertise it needs, in a "
    "few words), a self-contained `description` (the specialist sees only this and the "
    "results of the subtasks it depends on), and `depends_on`: the ids of the subtasks whose "
    "results it needs first (independent subtasks run in parallel). Set `check` to what you "
    "will verify on your own desktop once all results are in, or null when nothing needs "
    "checking. Reply with the JSON object the schema describes."
)

_ACT = (
    " Work through the tools. GUI actions (click, type, keypress, scroll, drag, ...) take "
    "pixel coordinates of the latest screenshot. `shell` runs a bash command on the desktop "
    "and returns its exit code and output: use it to install software (user root), handle "
    "files and check facts. Call several tools in one reply only when none depends on what "
    "the screen shows in between. After your actions you get their results and a new "
    "screenshot. When the task is done and you have verified it, call `done` with a short "
    "report holding the facts the requester needs (paths, versions, URLs); if it cannot be "
    "done, call `fail` with the reason. When only the person who gave you the task can "
    "answer something (a choice, a missing detail), call `ask_user` with the question."
)

_ACT_COMPUTER = (
    " Use the computer tool to act on the screen; the `shell` function runs a bash command "
    "on the desktop and returns its exit code and output (use it to install software as user "
    "root, handle files and check facts). When the task is done and verified, stop calling "
    "tools and reply with a short report holding the facts the requester needs (paths, "
    "versions, URLs). If it cannot be done, call `fail` with the reason. When only the "
    "person who gave you the task can answer something, call `ask_user` with the question."
)


def who(ctx: BrainContext, obs: Observation) -> str:
    """Who the model is and what it looks at."""
    return _WHO.format(
        role=ctx.role, path=ctx.agent_path or "(unnamed)", width=obs.width, height=obs.height
    )


def acting_instructions(ctx: BrainContext, obs: Observation, *, computer_tool: bool) -> str:
    """The system instructions of the step loop (function tools, or the computer tool)."""
    return who(ctx, obs) + (_ACT_COMPUTER if computer_tool else _ACT)


def task_text(ctx: BrainContext) -> str:
    """The task and the results it builds on, as the model reads them."""
    text = f"Task ({ctx.task_id}):\n{ctx.description}"
    if ctx.subtask_results:
        text += "\n\nResults of the work this task builds on:\n" + "\n".join(
            f"- {k}: {v}" for k, v in ctx.subtask_results.items()
        )
    return text


def check_text(ctx: BrainContext, results: dict[str, str], check: str | None) -> str:
    """The check after delegation: what the specialists reported and what to verify."""
    text = (
        f"Task ({ctx.task_id}):\n{ctx.description}\n\n"
        "You split this task into subtasks; the specialists reported:\n"
        + "\n".join(f"- {k}: {v}" for k, v in results.items())
        + "\n\nVerify on your own desktop that the task is really done"
    )
    text += f": {check}" if check else "."
    return text + " Then report the overall result (or fail with the reason)."
