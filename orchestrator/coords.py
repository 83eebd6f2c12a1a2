"""Coordinate spaces: the size of the screenshot a model is sent, the space its replies'
coordinates are in, and the exact mapping of those coordinates to screen pixels.

Computer-use models answer in different spaces:

- ``NativeSpace``: screen pixels (our chat-tools brain; OpenAI's computer tool by default).
- ``FixedSpace``: the XGA/WXGA/FWXGA rule of Anthropic's computer-use reference: a screen
  larger than a target of the same aspect ratio (within 0.02) is shown at that target's size;
  otherwise it is shrunk to fit ``max_long_edge`` and ``max_pixels`` (the Messages API
  silently shrinks larger images, and clicks would drift).
- ``GridSpace``: pixels of the image resized by ``smart_resize`` (sides multiples of
  ``factor``, area within ``min_pixels``..``max_pixels``): UI-TARS-1.5, Qwen2.5-VL, OpenCUA.
- ``NormSpace``: 0..1000 (``scale=1000``: UI-TARS-1.0, Doubao, Qwen3-VL) or 0..1
  (``scale=1``: some OpenCUA variants), whatever the image's size; the image itself is sized
  by ``image`` (a grid, usually).

``image_size(space, screen)`` is the screenshot to send; ``model_size(space, screen)`` the
space replies are in (0..1 replies are fractions of it); ``Mapper`` turns a reply's point into
the screen pixel under it, and a screen pixel back into the model's space.

Example:
    >>> space = GridSpace()
    >>> image_size(space, (1920, 1080)), model_size(NormSpace(), (1920, 1080))
    ((1932, 1092), (1000, 1000))
    >>> m = Mapper(model_size=(1000, 1000), screen_size=(1920, 1080))
    >>> m.point(500, 500), m.point(0, 0), m.point(1000, 1000)
    ((960, 540), (0, 0), (1919, 1079))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ConfigError

__all__ = [
    "CoordinateSpace",
    "FixedSpace",
    "GridSpace",
    "Mapper",
    "NativeSpace",
    "NormSpace",
    "OutOfSpaceError",
    "Size",
    "check_screenshot_size",
    "image_size",
    "model_size",
    "smart_resize",
]

Size = tuple[int, int]
"""``(width, height)`` in pixels."""

_MAX_SIDE = 4096
"""The longest side of a screenshot a space may ask for (4K)."""
_MAX_AREA = 1 << 24
"""The largest screenshot area a space may ask for: 16.8 megapixels (Qwen3-VL's 16384
32x32 cells); the default grid budget, 16384 28x28 cells, is 12.8 MP."""
_MAX_MIN_AREA = 1 << 20
"""The largest ``min_pixels`` (1 MP): a grid enlarges a smaller screen up to it."""

_Side = Annotated[int, Field(gt=0, le=_MAX_SIDE)]
_Area = Annotated[int, Field(gt=0, le=_MAX_AREA)]


class _Space(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NativeSpace(_Space):
    """Screen pixels: the screenshot is sent at the screen's size."""

    kind: Literal["native"] = "native"


class FixedSpace(_Space):
    """Anthropic's rule: XGA 1024x768, WXGA 1280x800 or FWXGA 1366x768 when the screen is
    larger with the same aspect ratio (within 0.02); otherwise fit within ``max_long_edge``
    and ``max_pixels`` (never enlarged)."""

    kind: Literal["fixed"] = "fixed"
    targets: Annotated[tuple[tuple[_Side, _Side], ...], Field(max_length=16)] = (
        (1024, 768),
        (1280, 800),
        (1366, 768),
    )
    """Sizes tried in order; the first of the screen's aspect ratio wins (if smaller);
    at most 4096 a side."""
    max_long_edge: _Side = 1568
    """Longest side the model sees unshrunk (at most 4096)."""
    max_pixels: _Area = 1_150_000
    """Largest area the model sees unshrunk (about 1.15 megapixels; at most 16.8 MP)."""


class GridSpace(_Space):
    """Pixels of the screenshot resized by ``smart_resize``: both sides multiples of
    ``factor``, the area within ``min_pixels``..``max_pixels``, the aspect ratio kept."""

    kind: Literal["grid"] = "grid"
    factor: Annotated[int, Field(gt=0, le=64)] = 28
    """28 for Qwen2.5-VL-based models (patch 14, merge 2); 32 for Qwen3-VL (at most 64)."""
    min_pixels: Annotated[int, Field(gt=0, le=_MAX_MIN_AREA)] = 4 * 28 * 28
    """The smallest image (at most 1 MP): a smaller screen is enlarged to it."""
    max_pixels: _Area = 16384 * 28 * 28
    """The image budget: fewer pixels, fewer tokens per screenshot (at most 16.8 MP, so a
    tenant's space cannot make the host build a huge screenshot)."""

    @model_validator(mode="after")
    def _budget(self) -> GridSpace:
        # as Qwen3-VL's smart_resize asserts; a budget under one cell cannot be kept
        if self.min_pixels > self.max_pixels:
            raise ValueError(
                f"min_pixels ({self.min_pixels}) is over max_pixels ({self.max_pixels})"
            )
        if self.max_pixels < self.factor * self.factor:
            raise ValueError(
                f"max_pixels ({self.max_pixels}) is under one {self.factor}x{self.factor} cell"
            )
        return self


class NormSpace(_Space):
    """Coordinates normalised to 0..``scale`` on both axes, whatever the image's size."""

    kind: Literal["norm"] = "norm"
    scale: Literal[1000, 1] = 1000
    """1000: integers 0..1000; 1: fractions 0..1."""
    image: NativeSpace | FixedSpace | GridSpace = Field(
        default_factory=GridSpace, discriminator="kind"
    )
    """How the screenshot itself is sized."""


CoordinateSpace = Annotated[
    NativeSpace | FixedSpace | GridSpace | NormSpace, Field(discriminator="kind")
]
"""Where a model's coordinates live: one of ``NativeSpace``, ``FixedSpace``, ``GridSpace``,
``NormSpace``, told apart by ``kind``."""


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 4 * 28 * 28,
    max_pixels: int = 16384 * 28 * 28,
) -> tuple[int, int]:
    """``(height, width)`` resized as Qwen2.5-VL's image processor does (argument order and
    rounding as its reference ``smart_resize``): sides rounded to multiples of ``factor``,
    then scaled down (or up) so the area is within ``min_pixels``..``max_pixels``.

    Example:
        >>> smart_resize(800, 1280), smart_resize(1080, 1920), smart_resize(768, 1024)
        ((812, 1288), (1092, 1932), (756, 1036))
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"bad image size {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is over 200")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _fit(screen: Size, max_long_edge: int, max_pixels: int) -> Size:
    w, h = screen
    scale = min(1.0, max_long_edge / max(w, h), math.sqrt(max_pixels / (w * h)))
    if scale >= 1.0:
        return screen
    return max(1, math.floor(w * scale)), max(1, math.floor(h * scale))


def image_size(space: CoordinateSpace, screen: Size) -> Size:
    """The ``(width, height)`` of the screenshot to send a model of ``space``."""
    w, h = screen
    if w <= 0 or h <= 0:
        raise ValueError(f"bad screen size {w}x{h}")
    match space:
        case NativeSpace():
            return screen
        case FixedSpace():
            for tw, th in space.targets:
                if abs(tw / th - w / h) < 0.02:
                    if tw < w:
                        return (tw, th)
                    break
            return _fit(screen, space.max_long_edge, space.max_pixels)
        case GridSpace():
            gh, gw = smart_resize(h, w, space.factor, space.min_pixels, space.max_pixels)
            return (gw, gh)
        case NormSpace():
            return image_size(space.image, screen)
    raise TypeError(f"not a coordinate space: {space!r}")


def check_screenshot_size(size: Size, screen: Size) -> None:
    """``ConfigError`` unless ``size`` is a screenshot worth building of ``screen``: no
    larger than the screen, or enlarged to at most twice the screen and 4096 a side
    (``Desktop.screenshot`` checks the size a coordinate space asks for, so no space makes
    the host build a huge image; an 8K screen shrunk to a model's budget is fine).

    Example:
        >>> check_screenshot_size((1932, 1092), (1920, 1080))
        >>> check_screenshot_size((16384, 16384), (1920, 1080))
        Traceback (most recent call last):
        ...
        orchestrator.errors.ConfigError: a 16384x16384 screenshot of the 1920x1080 screen ...
    """
    (w, h), (sw, sh) = size, screen
    max_w, max_h = max(sw, min(2 * sw, _MAX_SIDE)), max(sh, min(2 * sh, _MAX_SIDE))
    if not (0 < w <= max_w and 0 < h <= max_h):
        raise ConfigError(
            f"a {w}x{h} screenshot of the {sw}x{sh} screen is refused: a model's coordinate "
            f"space may ask for at most twice the screen and {_MAX_SIDE} pixels a side"
        )


def model_size(space: CoordinateSpace, screen: Size) -> Size:
    """The space a model of ``space`` answers in: ``(1000, 1000)`` for 0..1000, else the size
    of the image it was sent (0..1 fractions are scaled by it)."""
    if isinstance(space, NormSpace) and space.scale == 1000:
        return (1000, 1000)
    return image_size(space, screen)


class OutOfSpaceError(ValueError):
    """A model's point is outside the space it answers in (fed back to the model)."""


@dataclass(frozen=True, slots=True)
class Mapper:
    """Maps a model's points (in ``model_size``) to screen pixels (in ``screen_size``), exactly.

    An integer point is a model pixel: it maps to the screen pixel under its centre,
    ``floor((x + 0.5) * W / w)``, so when the model space is no larger than the screen,
    ``to_model(*point(x, y)) == (x, y)``. A non-integer point maps to ``floor(x * W / w)``.
    The far edge (``x == w``) is allowed and clamped to the last pixel; beyond it, or
    negative, is ``OutOfSpaceError``.

    Example:
        >>> m = Mapper(model_size=(1288, 812), screen_size=(1280, 800))
        >>> m.point(644, 406), m.to_model(640, 400), m.fraction(0.5, 0.5)
        ((640, 400), (644, 406), (640, 400))
    """

    model_size: Size
    screen_size: Size

    def __post_init__(self) -> None:
        for what, (w, h) in (("model", self.model_size), ("screen", self.screen_size)):
            if w <= 0 or h <= 0:
                raise ValueError(f"bad {what} size {w}x{h}")

    def point(self, x: float, y: float) -> tuple[int, int]:
        """The screen pixel under the model's point ``(x, y)``."""
        mw, mh = self.model_size
        if not (_finite(x) and _finite(y) and 0 <= x <= mw and 0 <= y <= mh):
            raise OutOfSpaceError(
                f"({_num(x)}, {_num(y)}) is outside the {mw}x{mh} space of the screenshot: "
                f"x must be 0..{mw} and y 0..{mh}"
            )
        return (self._axis(x, mw, self.screen_size[0]), self._axis(y, mh, self.screen_size[1]))

    def fraction(self, fx: float, fy: float) -> tuple[int, int]:
        """The screen pixel at fractions ``(fx, fy)`` (0..1) of the model's space; a
        fraction that scales to a model pixel maps like that pixel."""
        if not (_finite(fx) and _finite(fy) and 0 <= fx <= 1 and 0 <= fy <= 1):
            raise OutOfSpaceError(f"({_num(fx)}, {_num(fy)}) is not a fraction 0..1 of the screen")
        mw, mh = self.model_size
        return self.point(_snap(fx * mw), _snap(fy * mh))

    def to_model(self, x: int, y: int) -> tuple[int, int]:
        """The model pixel under the centre of screen pixel ``(x, y)`` (a cursor, shown back)."""
        (mw, mh), (sw, sh) = self.model_size, self.screen_size
        x, y = min(max(x, 0), sw - 1), min(max(y, 0), sh - 1)
        return ((2 * x + 1) * mw // (2 * sw), (2 * y + 1) * mh // (2 * sh))

    @staticmethod
    def _axis(v: float, model: int, screen: int) -> int:
        if float(v).is_integer():
            n = int(v)
            out = (2 * n + 1) * screen // (2 * model)
        else:
            out = math.floor(v * screen / model)
        return min(max(out, 0), screen - 1)


def _snap(v: float) -> float:
    """``v``, or the integer it is within float error of: a fraction that scales to a pixel
    (29/800 of 800 is 28.999999999999996) maps like that pixel, at its centre."""
    nearest = round(v)
    return nearest if abs(v - nearest) < 1e-9 * max(1.0, abs(v)) else v


_HUGE = 1 << 53
"""Integers beyond this are no point of any space (and ``math.isfinite`` overflows on
integers beyond a float's range: 10**400)."""


def _finite(v: float) -> bool:
    """Whether ``v`` is a real, finite number of sane size (never raises: a model's
    10**400 is simply not finite here)."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return -_HUGE <= v <= _HUGE
    return isinstance(v, float) and math.isfinite(v)


def _num(v: object) -> str:
    if isinstance(v, int) and not isinstance(v, bool) and not -_HUGE <= v <= _HUGE:
        return f"{'-' if v < 0 else ''}a {v.bit_length()}-bit integer"
    return repr(v)[:40] if not isinstance(v, float) else f"{v:g}"
