"""The trained prompts of the open computer-use models, as their authors publish them.

Each template is reproduced from the source named above it (the model's own repository, or
the OSWorld agent its authors evaluate with); only the placeholders are ours. The words are
what the models were trained or evaluated on: do not "improve" them.
"""

from __future__ import annotations

import json
from typing import Any

from ._parse_qwen import ACTIONS

__all__ = [
    "OPENCUA_INSTRUCTION",
    "OPENCUA_SYSTEM",
    "QWEN_INSTRUCTION",
    "UITARS_SYSTEM",
    "opencua_step",
    "qwen_system",
    "uitars_prompt",
]

# ---------------------------------------------------------------------------- UI-TARS

UITARS_SYSTEM = "You are a helpful assistant."
"""The system message of OSWorld's UI-TARS agents (xlang-ai/OSWorld mm_agents/uitars15_v1.py,
``UITARSAgent.predict``); the prompt itself is the first user message."""

# Source: bytedance/UI-TARS prompts.py at 347224075547a2be65ef8b404bc656dc805d36d1
# (``COMPUTER_USE``, the UI-TARS-1.5 desktop prompt), with the ``call_user()`` line of the
# UI-TARS-1.0 computer prompt (bytedance/UI-TARS README_v1.md, "Prompt template for
# computer"; OSWorld ``UITARS_CALL_USR_ACTION_SPACE``) so the model can ask a person.
_UITARS_15 = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task.

## Output Format
```
Thought: ...
Action: ...
```

## Action Space

click(start_box='<|box_start|>(x1,y1)<|box_end|>')
left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')
right_single(start_box='<|box_start|>(x1,y1)<|box_end|>')
drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
hotkey(key='')
type(content='xxx') # Use escape characters \\', \\\", and \\n in content part to ensure we can parse the content in normal python string format. If you want to submit your input, use \\n at the end of content. 
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')
wait() #Sleep for 5s and take a screenshot to check for any changes.
finished(content='xxx') # Use escape characters \\', \\", and \\n in content part to ensure we can parse the content in normal python string format.
call_user() # Submit the task and call the user when the task is unsolvable, or when you need the user's help.


## Note
- Use {language} in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
{instruction}
"""  # noqa: E501, W291

# Source: bytedance/UI-TARS README_v1.md ("Prompt template for computer", UI-TARS-1.0), as
# OSWorld's UITARSAgent formats it (``UITARS_USR_PROMPT_THOUGHT`` with
# ``UITARS_CALL_USR_ACTION_SPACE``).
_UITARS_10 = """You are a GUI agent. You are given a task and your action history, with screenshots. You need to perform the next action to complete the task. 

## Output Format
```
Thought: ...
Action: ...
```

## Action Space

click(start_box='<|box_start|>(x1,y1)<|box_end|>')
left_double(start_box='<|box_start|>(x1,y1)<|box_end|>')
right_single(start_box='<|box_start|>(x1,y1)<|box_end|>')
drag(start_box='<|box_start|>(x1,y1)<|box_end|>', end_box='<|box_start|>(x3,y3)<|box_end|>')
hotkey(key='')
type(content='') #If you want to submit your input, use "\\n" at the end of `content`.
scroll(start_box='<|box_start|>(x1,y1)<|box_end|>', direction='down or up or right or left')
wait() #Sleep for 5s and take a screenshot to check for any changes.
finished()
call_user() # Submit the task and call the user when the task is unsolvable, or when you need the user's help.


## Note
- Use {language} in `Thought` part.
- Write a small plan and finally summarize your next action (with its target element) in one sentence in `Thought` part.

## User Instruction
{instruction}
"""  # noqa: E501, W291


def uitars_prompt(instruction: str, *, v1: bool, language: str = "English") -> str:
    """The UI-TARS user prompt: 1.5's (``finished(content=...)``), or 1.0's (``v1``)."""
    template = _UITARS_10 if v1 else _UITARS_15
    return template.replace("{language}", language).replace("{instruction}", instruction)


# ---------------------------------------------------------------------------- Qwen-VL

# Source: QwenLM/Qwen2.5-VL cookbooks/utils/agent_function_call.py at
# f0af2996e843cf46aa5f778c38d6694500c2ca81 (``ComputerUse``: description and parameters).
_QWEN25_ACTIONS = """The action to perform. The available actions are:
* `key`: Performs key down presses on the arguments passed in order, then performs key releases in reverse order.
* `type`: Type a string of text on the keyboard.
* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.
* `left_click`: Click the left mouse button.
* `left_click_drag`: Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.
* `right_click`: Click the right mouse button.
* `middle_click`: Click the middle mouse button.
* `double_click`: Double-click the left mouse button.
* `scroll`: Performs a scroll of the mouse scroll wheel.
* `wait`: Wait specified seconds for the change to happen.
* `terminate`: Terminate the current task and report its completion status."""  # noqa: E501
_QWEN25_ENUM = [
    "key",
    "type",
    "mouse_move",
    "left_click",
    "left_click_drag",
    "right_click",
    "middle_click",
    "double_click",
    "scroll",
    "wait",
    "terminate",
]
_QWEN25_COORDINATE = (
    "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates to "
    "move the mouse to. Required only by `action=mouse_move` and `action=left_click_drag`."
)

# Source: QwenLM/Qwen3-VL cookbooks/utils/agent_function_call.py at
# 96588727e44c78b25ba03ea03b8e12f7e64fd0da (``ComputerUse``: description and parameters).
_QWEN3_ACTIONS = """The action to perform. The available actions are:
* `key`: Performs key down presses on the arguments passed in order, then performs key releases in reverse order.
* `type`: Type a string of text on the keyboard.
* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.
* `left_click`: Click the left mouse button at a specified (x, y) pixel coordinate on the screen.
* `left_click_drag`: Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.
* `right_click`: Click the right mouse button at a specified (x, y) pixel coordinate on the screen.
* `middle_click`: Click the middle mouse button at a specified (x, y) pixel coordinate on the screen.
* `double_click`: Double-click the left mouse button at a specified (x, y) pixel coordinate on the screen.
* `triple_click`: Triple-click the left mouse button at a specified (x, y) pixel coordinate on the screen (simulated as double-click since it's the closest action).
* `scroll`: Performs a scroll of the mouse scroll wheel.
* `hscroll`: Performs a horizontal scroll (mapped to regular scroll).
* `wait`: Wait specified seconds for the change to happen.
* `terminate`: Terminate the current task and report its completion status.
* `answer`: Answer a question."""  # noqa: E501
_QWEN3_ENUM = list(ACTIONS)  # the parser takes exactly the tool's actions
_QWEN3_COORDINATE = (
    "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) coordinates to "
    "move the mouse to."
)

_QWEN_DESCRIPTION = """Use a mouse and keyboard to interact with a computer, and take screenshots.
* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. You must click on desktop icons to start applications.
* Some applications may take time to start or process actions, so you may need to wait and take successive screenshots to see the results of your actions. E.g. if you click on Firefox and a window doesn't open, try wait and taking another screenshot.
* The screen's resolution is {width}x{height}.
* Whenever you intend to move the cursor to click on an element like an icon, you should consult a screenshot to determine the coordinates of the element before moving the cursor.
* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting your cursor position so that the tip of the cursor visually falls on the element that you want to click.
* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. Don't click boxes on their edges unless asked."""  # noqa: E501

# Source: qwen-agent's NousFnCallPrompt (qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py),
# which the Qwen2.5-VL and Qwen3-VL computer_use cookbooks use to declare the tool; the same
# "# Tools" block Qwen's chat templates render for ``tools``.
_NOUS = """You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""  # noqa: E501


def _description(width: int, height: int, *, qwen3: bool) -> str:
    text = _QWEN_DESCRIPTION.format(width=width, height=height)
    # Qwen3-VL's last line ends "on their edges." (2.5's: "... unless asked.")
    return text.replace(" on their edges unless asked.", " on their edges.") if qwen3 else text


def _qwen_tool(width: int, height: int, *, qwen3: bool) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "properties": {
            "action": {
                "description": _QWEN3_ACTIONS if qwen3 else _QWEN25_ACTIONS,
                "enum": _QWEN3_ENUM if qwen3 else _QWEN25_ENUM,
                "type": "string",
            },
            "keys": {"description": "Required only by `action=key`.", "type": "array"},
            "text": {
                "description": "Required only by `action=type` and `action=answer`."
                if qwen3
                else "Required only by `action=type`.",
                "type": "string",
            },
            "coordinate": {
                "description": _QWEN3_COORDINATE if qwen3 else _QWEN25_COORDINATE,
                "type": "array",
            },
            "pixels": {
                "description": "The amount of scrolling to perform. Positive values scroll up, "
                "negative values scroll down. Required only by "
                + ("`action=scroll` and `action=hscroll`." if qwen3 else "`action=scroll`."),
                "type": "number",
            },
            "time": {
                "description": "The seconds to wait. Required only by `action=wait`.",
                "type": "number",
            },
            "status": {
                "description": "The status of the task. Required only by `action=terminate`.",
                "type": "string",
                "enum": ["success", "failure"],
            },
        },
        "required": ["action"],
        "type": "object",
    }
    return {
        "type": "function",
        "function": {
            "name": "computer_use",
            "description": _description(width, height, qwen3=qwen3),
            "parameters": parameters,
        },
    }


def qwen_system(width: int, height: int, *, qwen3: bool) -> str:
    """The Qwen-VL system message declaring ``computer_use`` on a ``width`` x ``height``
    display (the space the model answers in)."""
    tool = json.dumps(_qwen_tool(width, height, qwen3=qwen3), ensure_ascii=False)
    return _NOUS.format(tools=tool)


# Source: xlang-ai/OSWorld mm_agents/qwen3vl_agent.py (``instruction_prompt``): the task,
# and the steps older than the screenshots kept, as text.
QWEN_INSTRUCTION = """
Please generate the next move according to the UI screenshot, instruction and previous actions.

Instruction: {instruction}

Previous actions:
{previous}"""

# ---------------------------------------------------------------------------- OpenCUA

# Source: xlang-ai/OpenCUA evaluation/agentnetbench/agent/opencua.py at
# 1d70f20663dcaa01f10c7fed5669887286545866 (``L2_SYSTEM_PROMPTS``: the system prompt of the
# OpenCUA-7B/32B training data, the "l2" level OSWorld's OpenCUAAgent uses by default).
OPENCUA_SYSTEM = 'You are a GUI agent. You are given a task and a screenshot of the screen. You need to perform a series of pyautogui actions to complete the task.\n\nFor each step, provide your response in this format:\n\nThought:\n  - Step by Step Progress Assessment:\n    - Analyze completed task parts and their contribution to the overall goal\n    - Reflect on potential errors, unexpected results, or obstacles\n    - If previous action was incorrect, predict a logical recovery step\n  - Next Action Analysis:\n    - List possible next actions based on current state\n    - Evaluate options considering current state and previous actions\n    - Propose most logical next action\n    - Anticipate consequences of the proposed action\n  - For Text Input Actions:\n    - Note current cursor position\n    - Consolidate repetitive actions (specify count for multiple keypresses)\n    - Describe expected final text outcome\n    - Use first-person perspective in reasoning\n\nAction:\n  Provide clear, concise, and actionable instructions:\n  - If the action involves interacting with a specific target:\n    - Describe target explicitly without using coordinates\n    - Specify element names when possible (use original language if non-English)\n    - Describe features (shape, color, position) if name unavailable\n    - For window control buttons, identify correctly (minimize "—", maximize "□", close "X")\n  - if the action involves keyboard actions like \'press\', \'write\', \'hotkey\':\n    - Consolidate repetitive keypresses with count\n    - Specify expected text outcome for typing actions\n\nFinally, output the action as PyAutoGUI code or the following functions:\n- {"name": "computer.triple_click", "description": "Triple click on the screen", "parameters": {"type": "object", "properties": {"x": {"type": "number", "description": "The x coordinate of the triple click"}, "y": {"type": "number", "description": "The y coordinate of the triple click"}}, "required": ["x", "y"]}}\n- {"name": "computer.terminate", "description": "Terminate the current task and report its completion status", "parameters": {"type": "object", "properties": {"status": {"type": "string", "enum": ["success", "failure"], "description": "The status of the task"}}, "required": ["status"]}}'  # noqa: E501

# Source: the same file (``INSTRUTION_TEMPLATE``, ``STEP_TEMPLATE``, ``ACTION_HISTORY_TEMPLATE``).
OPENCUA_INSTRUCTION = (
    "\n# Task Instruction:\n{instruction}\n\n"
    "Please generate the next move according to the screenshot, task instruction and previous "
    "steps (if provided).\n"
)


def opencua_step(number: int, action: str) -> str:
    """A previous step as OpenCUA's history shows it (``# Step n:`` and its action)."""
    return f"# Step {number}:\n## Action:\n{action}\n"
