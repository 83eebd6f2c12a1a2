"""How each open model family's conversation is laid out: prompt, history, retry wording.

A ``Layout`` turns the task's past steps (``Past``: the model's reply, the screen it was
made on while it is still within the image budget, and what to tell the model about its
results) and the current screen into Chat Completions messages, in the format the family's
reference agent uses (sources in ``_open_prompts``):

- UI-TARS (OSWorld ``UITARSAgent``): system "You are a helpful assistant.", the prompt with
  the instruction as the first user message, then for each step the screen (while kept) as
  a user message and the model's ``Thought/Action`` text as the assistant's; the current
  screen last. Servers may strip the ``<|box_start|>`` tokens: they are put back.
- Qwen-VL (OSWorld ``Qwen3VLAgent``): the ``computer_use`` tool declared in the system
  message; the steps within the image budget as screen/``<tool_call>`` text pairs, the first
  of them with the instruction and the older steps listed as "Previous actions".
- OpenCUA (OSWorld ``OpenCUAAgent``): its system prompt; steps older than the image budget
  joined in one assistant message (``# Step n: ## Action: ...``), the recent ones each after
  its screen; the current screen with the instruction last.

``render_*`` write a step this brain did not decide (a history from before a restart) in
the family's own words, with points in the model's space.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..actions import (
    Action,
    Click,
    DoubleClick,
    Drag,
    KeyPress,
    Move,
    Scroll,
    TripleClick,
    TypeText,
    Wait,
)
from ..domain import Ask, Decision
from ._base import Observation
from ._open_prompts import (
    OPENCUA_INSTRUCTION,
    OPENCUA_SYSTEM,
    QWEN_INSTRUCTION,
    UITARS_SYSTEM,
    opencua_step,
    qwen_system,
    uitars_prompt,
)

__all__ = ["LAYOUTS", "Layout", "Past", "PointFn"]

Message = dict[str, Any]
PointFn = Callable[[int, int], tuple[float, float]]
"""A screen pixel to the model's coordinates (shown back to the model)."""


@dataclass(frozen=True)
class Past:
    """One past step as the model is shown it."""

    text: str
    """The assistant's reply: the model's own text, or the step rendered in its format."""
    screen: Observation | None
    """The screen the step was decided on, while within the image budget."""
    note: str | None
    """What to tell the model with the next screen (failed actions, a person's answer)."""


def image(obs: Observation) -> Message:
    """A screenshot as a content part (a ``data:`` URL)."""
    return {"type": "image_url", "image_url": {"url": obs.data_url()}}


def _text(text: str) -> Message:
    return {"type": "text", "text": text}


def _user(parts: list[Message]) -> Message:
    return {"role": "user", "content": parts}


def _notes(note: str | None) -> list[Message]:
    return [_text(note)] if note else []


def _thought(decision: Decision) -> str:
    """What a step this brain did not decide thought: its thought, else the reason given."""
    return (decision.thought or getattr(decision, "reason", "") or "").strip()


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.4f}".rstrip("0")


class Layout(ABC):
    """A family's conversation format; subclasses fill in the parts."""

    default_images = 5
    """Screenshots per request (the current one included) unless ``max_images`` says."""
    temperature: float | None = 0.0
    """The reference agent's sampling temperature (used when the config names none)."""

    def __init__(self, *, display: tuple[int, int], older: bool = False) -> None:
        self.display = display
        """The size of the space the model answers in (declared where the format has it)."""
        self.older = older
        """The family's older version: UI-TARS-1.0's prompt, Qwen2.5-VL's tool."""

    @abstractmethod
    def messages(
        self, instruction: str, past: list[Past], current: Observation, window: int
    ) -> list[Message]:
        """The request: ``past[window:]`` keep their screens (those that have one)."""

    @abstractmethod
    def retry(self, error: str) -> str:
        """The user message answering a reply that could not be used."""

    @abstractmethod
    def render(self, decision: Decision, point: PointFn) -> str:
        """A step this brain did not decide, in the family's format."""


# ---------------------------------------------------------------------------- UI-TARS

_BOX = re.compile(r"(start_box|end_box)='\((\d+(?:\.\d+)?),\s*(\d+(?:\.\d+)?)\)'")


def add_box_tokens(text: str) -> str:
    """``start_box='(x,y)'`` with the ``<|box_start|>``/``<|box_end|>`` tokens servers strip,
    as OSWorld's ``add_box_token`` restores them in the history."""
    return _BOX.sub(lambda m: f"{m[1]}='<|box_start|>({m[2]},{m[3]})<|box_end|>'", text)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


class UITarsLayout(Layout):
    """UI-TARS 1.0 and 1.5: ``Thought: ... Action: ...`` text."""

    default_images = 5  # OSWorld UITARSAgent history_n

    def messages(
        self, instruction: str, past: list[Past], current: Observation, window: int
    ) -> list[Message]:
        out: list[Message] = [
            {"role": "system", "content": UITARS_SYSTEM},
            _user([_text(uitars_prompt(instruction, v1=self.older))]),
        ]
        note: str | None = None
        for step in past:
            parts = _notes(note) + ([image(step.screen)] if step.screen else [])
            if parts:
                out.append(_user(parts))
            out.append({"role": "assistant", "content": add_box_tokens(step.text)})
            note = step.note
        out.append(_user([*_notes(note), image(current)]))
        return out

    def retry(self, error: str) -> str:
        return (
            f"Your last reply could not be carried out: {error}\n"
            "Reply again with one step in the format of the Action Space:\n"
            "Thought: ...\nAction: ..."
        )

    def render(self, decision: Decision, point: PointFn) -> str:
        thought = _thought(decision)
        if isinstance(decision, Ask):
            calls = ["call_user()"]
            thought = thought or decision.question
        else:
            calls = [self._call(a, point) for a in getattr(decision, "actions", [])] or ["wait()"]
        return f"Thought: {thought}\nAction: " + "\n\n".join(calls)

    @staticmethod
    def _call(action: Action, point: PointFn) -> str:
        def box(x: int, y: int) -> str:
            mx, my = point(x, y)
            return f"'({_fmt(mx)},{_fmt(my)})'"

        match action:
            case Click(button="right"):
                return f"right_single(start_box={box(action.x, action.y)})"
            case Click() | Move():
                return f"click(start_box={box(action.x, action.y)})"
            case DoubleClick() | TripleClick():
                return f"left_double(start_box={box(action.x, action.y)})"
            case Drag():
                a, b = action.path[0], action.path[-1]
                return f"drag(start_box={box(a.x, a.y)}, end_box={box(b.x, b.y)})"
            case Scroll():
                if action.scroll_y:
                    direction = "down" if action.scroll_y > 0 else "up"
                else:
                    direction = "right" if action.scroll_x > 0 else "left"
                return f"scroll(start_box={box(action.x, action.y)}, direction='{direction}')"
            case TypeText():
                return f"type(content='{_quote(action.text)}')"
            case KeyPress():
                keys = [k.lower() for combo in action.keys for k in combo.split("+")]
                return f"hotkey(key='{' '.join(keys)}')"
            case Wait():
                return "wait()"
        return f"{action.type}()"


# ---------------------------------------------------------------------------- Qwen-VL

_TOOL_CALL = re.compile(r"<tool_call>.*?(?:</tool_call>|$)", re.DOTALL)
_ACTION_LINE = re.compile(r"^\s*Action:\s*(.+)$", re.MULTILINE)


def qwen_summary(text: str) -> str:
    """A step in one line for "Previous actions": its ``Action:`` line, else its words
    before the call, else the call's arguments."""
    line = _ACTION_LINE.search(text)
    if line:
        return line[1].strip()
    words = " ".join(_TOOL_CALL.sub(" ", text).split())
    if words:
        return words
    calls = [
        c.replace("<tool_call>", "").replace("</tool_call>", "") for c in _TOOL_CALL.findall(text)
    ]
    return " ".join(" ".join(calls).split())


class QwenLayout(Layout):
    """Qwen2.5-VL and Qwen3-VL: a ``computer_use`` function called in ``<tool_call>`` text."""

    default_images = 5  # OSWorld Qwen3VLAgent history_n 4, plus the current screen

    def messages(
        self, instruction: str, past: list[Past], current: Observation, window: int
    ) -> list[Message]:
        width, height = self.display
        out: list[Message] = [
            {"role": "system", "content": qwen_system(width, height, qwen3=not self.older)}
        ]
        previous = "\n".join(
            f"Step {i + 1}: {qwen_summary(p.text)}" for i, p in enumerate(past[:window])
        )
        prompt = _text(
            QWEN_INSTRUCTION.format(instruction=instruction, previous=previous or "None")
        )
        note = past[window - 1].note if window > 0 else None
        first = True
        for step in past[window:]:
            parts = _notes(note) + ([image(step.screen)] if step.screen else [])
            if first:
                parts.append(prompt)
                first = False
            if parts:
                out.append(_user(parts))
            out.append({"role": "assistant", "content": step.text})
            note = step.note
        last = [*_notes(note), image(current)]
        out.append(_user([*last, prompt] if first else last))
        return out

    def retry(self, error: str) -> str:
        return (
            f"Your last reply could not be carried out: {error}\n"
            "Reply again with the next action as one function call: <tool_call>\n"
            '{"name": "computer_use", "arguments": <args-json-object>}\n</tool_call>'
        )

    def render(self, decision: Decision, point: PointFn) -> str:
        thought = _thought(decision)
        if isinstance(decision, Ask):
            return f"{thought}\n{decision.question}".strip()
        calls = [
            "<tool_call>\n"
            + json.dumps({"name": "computer_use", "arguments": args}, ensure_ascii=False)
            + "\n</tool_call>"
            for action in getattr(decision, "actions", [])
            for args in self._arguments(action, point)
        ]
        return "\n".join([thought, *calls]).strip()

    @staticmethod
    def _arguments(action: Action, point: PointFn) -> list[dict[str, Any]]:
        def xy(x: int, y: int) -> list[float]:
            return [float(v) if not float(v).is_integer() else int(v) for v in point(x, y)]

        clicks = {"left": "left_click", "right": "right_click", "middle": "middle_click"}
        match action:
            case Click():
                kind = clicks.get(action.button, "left_click")
                return [{"action": kind, "coordinate": xy(action.x, action.y)}]
            case DoubleClick():
                return [{"action": "double_click", "coordinate": xy(action.x, action.y)}]
            case TripleClick():
                return [{"action": "triple_click", "coordinate": xy(action.x, action.y)}]
            case Move():
                return [{"action": "mouse_move", "coordinate": xy(action.x, action.y)}]
            case Drag():
                a, b = action.path[0], action.path[-1]
                return [
                    {"action": "mouse_move", "coordinate": xy(a.x, a.y)},
                    {"action": "left_click_drag", "coordinate": xy(b.x, b.y)},
                ]
            case Scroll():
                if action.scroll_x and not action.scroll_y:
                    return [{"action": "hscroll", "pixels": action.scroll_x}]
                return [
                    {
                        "action": "scroll",
                        "pixels": -action.scroll_y,
                        "coordinate": xy(action.x, action.y),
                    }
                ]
            case TypeText():
                return [{"action": "type", "text": action.text}]
            case KeyPress():
                return [{"action": "key", "keys": [k for c in action.keys for k in c.split("+")]}]
            case Wait():
                return [{"action": "wait", "time": action.duration_s}]
        return [{"action": action.type}]


# ---------------------------------------------------------------------------- OpenCUA

_SECTION = re.compile(r"^##\s*Action\s*:?\s*\n(.*?)(?=^##|\Z)", re.DOTALL | re.MULTILINE)
_CODE = re.compile(r"```(?:python|code)?\s*(.*?)\s*```", re.DOTALL | re.IGNORECASE)


def opencua_action(text: str) -> str:
    """A reply's ``## Action`` section (what OSWorld's OpenCUAAgent keeps of a step), else its
    code block, else the reply."""
    section = _SECTION.search(text)
    if section and section[1].strip():
        return section[1].strip()
    code = _CODE.findall(text)
    return (code[-1] if code else text).strip()


class OpenCUALayout(Layout):
    """OpenCUA: ``## Thought`` / ``## Action`` and pyautogui code."""

    default_images = 3  # OSWorld OpenCUAAgent max_image_history_length

    def messages(
        self, instruction: str, past: list[Past], current: Observation, window: int
    ) -> list[Message]:
        out: list[Message] = [{"role": "system", "content": OPENCUA_SYSTEM}]
        older = [opencua_step(i + 1, opencua_action(p.text)) for i, p in enumerate(past[:window])]
        if older:
            out.append({"role": "assistant", "content": "\n".join(older)})
        note = past[window - 1].note if window > 0 else None
        for i, step in enumerate(past[window:], start=window):
            parts = _notes(note) + ([image(step.screen)] if step.screen else [])
            if parts:
                out.append(_user(parts))
            out.append(
                {"role": "assistant", "content": opencua_step(i + 1, opencua_action(step.text))}
            )
            note = step.note
        text = OPENCUA_INSTRUCTION.format(instruction=instruction)
        out.append(_user([*_notes(note), image(current), _text(text)]))
        return out

    def retry(self, error: str) -> str:
        return (
            f"Your last reply could not be carried out: {error}\n"
            "Reply again with the next step: ## Thought, ## Action, and the action as PyAutoGUI "
            "code (or computer.terminate) in a ```python code block."
        )

    def render(self, decision: Decision, point: PointFn) -> str:
        thought = _thought(decision)
        if isinstance(decision, Ask):
            return f"## Thought:\n{thought}\n\n## Action:\nAsk the user: {decision.question}\n"
        lines = [self._code(a, point) for a in getattr(decision, "actions", [])]
        code = "\n".join(lines) or "computer.wait()"
        action = thought or code
        return (
            f"## Thought:\n{thought}\n\n## Action:\n{action}\n\n## Code:\n```python\n{code}\n```\n"
        )

    @staticmethod
    def _code(action: Action, point: PointFn) -> str:
        def xy(x: int, y: int) -> str:
            mx, my = point(x, y)
            return f"x={_fmt(mx)}, y={_fmt(my)}"

        match action:
            case Click(button="right"):
                return f"pyautogui.rightClick({xy(action.x, action.y)})"
            case Click(button="middle"):
                return f"pyautogui.middleClick({xy(action.x, action.y)})"
            case Click():
                return f"pyautogui.click({xy(action.x, action.y)})"
            case DoubleClick():
                return f"pyautogui.doubleClick({xy(action.x, action.y)})"
            case TripleClick():
                return f"computer.triple_click({xy(action.x, action.y)})"
            case Move():
                return f"pyautogui.moveTo({xy(action.x, action.y)})"
            case Drag():
                a, b = action.path[0], action.path[-1]
                return f"pyautogui.moveTo({xy(a.x, a.y)})\npyautogui.dragTo({xy(b.x, b.y)})"
            case Scroll():
                return f"pyautogui.scroll({-action.scroll_y}, {xy(action.x, action.y)})"
            case TypeText():
                return f"pyautogui.write({action.text!r})"
            case KeyPress():
                keys = [k.lower() for c in action.keys for k in c.split("+")]
                if len(keys) == 1:
                    return f"pyautogui.press({keys[0]!r})"
                return f"pyautogui.hotkey({', '.join(repr(k) for k in keys)})"
            case Wait():
                return "computer.wait()"
        return f"# {action.type}"


LAYOUTS: dict[str, type[Layout]] = {
    "uitars": UITarsLayout,
    "qwen-vl": QwenLayout,
    "opencua": OpenCUALayout,
}
"""The layout of each open family."""
