"""Each family's coordinate space, by model name where a family's versions differ.

Example:
    >>> default_space("uitars", "UI-TARS-1.5-7B").kind
    'grid'
    >>> default_space("uitars", "UI-TARS-7B-DPO").kind
    'norm'
    >>> space = default_space("qwen-vl", "Qwen3-VL-8B-Instruct")
    >>> space.scale, space.image.factor
    (1000, 32)
"""

from __future__ import annotations

import re

from ..coords import CoordinateSpace, FixedSpace, GridSpace, NativeSpace, NormSpace
from ..domain import BrainConfig, Family

__all__ = ["default_space", "space_of"]

# UI-TARS 1.0 checkpoints (UI-TARS-2B-SFT, -7B-SFT/-DPO, -72B-SFT/-DPO) and Doubao's
# computer-use models answer in 0..1000; UI-TARS-1.5 in pixels of the smart_resized image.
_UITARS_1_0 = re.compile(r"ui-?tars-(2b|7b|72b)-(sft|dpo)|doubao", re.IGNORECASE)
_QWEN3 = re.compile(r"qwen-?3", re.IGNORECASE)


def default_space(family: Family, model: str | None) -> CoordinateSpace:
    """The coordinate space a family's model answers in, told by its name where needed."""
    name = model or ""
    match family:
        case "chat-tools" | "openai-responses":
            return NativeSpace()
        case "anthropic":
            return FixedSpace()
        case "uitars":
            return NormSpace(scale=1000) if _UITARS_1_0.search(name) else GridSpace()
        case "qwen-vl":
            if _QWEN3.search(name):
                return NormSpace(
                    scale=1000,
                    image=GridSpace(factor=32, min_pixels=4 * 32 * 32, max_pixels=16384 * 32 * 32),
                )
            return GridSpace()
        case "opencua":
            return GridSpace()
    raise ValueError(f"unknown model family {family!r}")


def space_of(config: BrainConfig) -> CoordinateSpace:
    """The brain's space: its own ``space``, else its family's default."""
    family = config.resolved_family
    if family is None:
        return NativeSpace()
    return config.space or default_space(family, config.model)
