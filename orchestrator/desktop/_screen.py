"""Screen frames, the mapping between a model's screenshot space and the screen, and encoding.

Example:
    >>> from orchestrator.desktop._screen import Frame, Scaling, encode
    >>> s = Scaling.anthropic(1920, 1200)
    >>> (s.width, s.height), s.to_screen(1279, 799), s.to_model(1919, 1199)
    ((1280, 800), (1919, 1199), (1279, 799))
    >>> frame = Frame(2, 1, bytes([0, 0, 255, 0, 255, 0, 0, 0]), 0.0)
    >>> frame.pixel(0, 0), encode(frame, "png")[:4]
    ((255, 0, 0), b'\\x89PNG')
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Annotated, Literal

from PIL import Image
from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

__all__ = ["Frame", "ImageFormat", "Scaling", "Screenshot", "encode"]

ImageFormat = Literal["png", "jpeg"]

_Size = Annotated[int, Field(gt=0, le=65_535)]

# The targets of Anthropic's computer-use demo, in its order: (width, height).
_ANTHROPIC_TARGETS = ((1024, 768), (1280, 800), (1366, 768))
_ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True, slots=True)
class Frame:
    """A screen grab: BGRA pixels as mss delivers them (4 bytes a pixel, rows top down).

    Example:
        >>> Frame(1, 1, b"\\x10\\x20\\x30\\x00", 0.0).pixel(0, 0)
        (48, 32, 16)
    """

    width: int
    """Width in pixels."""
    height: int
    """Height in pixels."""
    bgra: bytes | bytearray
    """The pixels, ``width * height * 4`` bytes, blue-green-red-unused."""
    timestamp: float
    """``time.monotonic()`` just before the grab: the pixels are at least this fresh."""

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return (self.width, self.height)

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The ``(red, green, blue)`` of one pixel."""
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise IndexError(f"pixel ({x}, {y}) is outside the {self.width}x{self.height} frame")
        i = (y * self.width + x) * 4
        b, g, r = self.bgra[i : i + 3]
        return (r, g, b)

    def to_image(self) -> Image.Image:
        """The frame as an RGB Pillow image (one conversion pass, no other copy)."""
        expected = self.width * self.height * 4
        if len(self.bgra) != expected:
            raise ValueError(
                f"frame holds {len(self.bgra)} bytes, expected {expected} for "
                f"{self.width}x{self.height} BGRA"
            )
        return Image.frombuffer("RGB", self.size, self.bgra, "raw", "BGRX", 0, 1)


@pydantic_dataclass(frozen=True)
class Scaling:
    """Maps points between a model's (scaled) screenshot space and the screen, exactly.

    ``to_screen`` sends a model pixel to the screen pixel under its centre; ``to_model``
    sends a screen pixel to the model pixel under its centre. When the model space is no
    larger than the screen, ``to_model(*to_screen(x, y)) == (x, y)`` for every model pixel.

    Example:
        >>> s = Scaling.fit(1280, 800, 1024, 768)
        >>> s
        Scaling(screen_width=1280, screen_height=800, width=1024, height=640)
        >>> s.to_screen(1023, 639), s.to_model(*s.to_screen(512, 320))
        ((1279, 799), (512, 320))
    """

    screen_width: _Size
    """Screen width in pixels."""
    screen_height: _Size
    """Screen height in pixels."""
    width: _Size
    """Width of the model's space (the scaled screenshot)."""
    height: _Size
    """Height of the model's space."""

    @property
    def is_identity(self) -> bool:
        """True when the model sees the screen at its own size."""
        return self.width == self.screen_width and self.height == self.screen_height

    def to_screen(self, x: int, y: int) -> tuple[int, int]:
        """The screen pixel under the centre of model pixel ``(x, y)``."""
        # floor((x + 0.5) * W / w) in integers
        return (
            (2 * x + 1) * self.screen_width // (2 * self.width),
            (2 * y + 1) * self.screen_height // (2 * self.height),
        )

    def to_model(self, x: int, y: int) -> tuple[int, int]:
        """The model pixel under the centre of screen pixel ``(x, y)``."""
        return (
            (2 * x + 1) * self.width // (2 * self.screen_width),
            (2 * y + 1) * self.height // (2 * self.screen_height),
        )

    @classmethod
    def identity(cls, screen_width: int, screen_height: int) -> Scaling:
        """No scaling: the model works in screen pixels."""
        return cls(screen_width, screen_height, screen_width, screen_height)

    @classmethod
    def fit(cls, screen_width: int, screen_height: int, max_width: int, max_height: int) -> Scaling:
        """The largest size within ``max_width`` x ``max_height`` keeping the aspect ratio;
        never larger than the screen."""
        if max_width <= 0 or max_height <= 0:
            raise ValueError(f"bad maximum size {max_width}x{max_height}")
        sw, sh = screen_width, screen_height
        if sw <= max_width and sh <= max_height:
            return cls.identity(sw, sh)
        if max_width * sh <= max_height * sw:  # the width is the tighter bound
            w, h = max_width, (2 * sh * max_width + sw) // (2 * sw)
        else:
            w, h = (2 * sw * max_height + sh) // (2 * sh), max_height
        return cls(sw, sh, max(1, min(w, max_width)), max(1, min(h, max_height)))

    @classmethod
    def anthropic(cls, screen_width: int, screen_height: int) -> Scaling:
        """The scaling of Anthropic's computer-use demo: down to XGA 1024x768, WXGA 1280x800
        or FWXGA 1366x768 when the aspect ratio matches within 0.02 and the screen is wider;
        otherwise none."""
        ratio = screen_width / screen_height
        for w, h in _ANTHROPIC_TARGETS:
            if abs(w / h - ratio) < _ASPECT_TOLERANCE:
                if w < screen_width:
                    return cls(screen_width, screen_height, w, h)
                break  # the demo stops at the first aspect match
        return cls.identity(screen_width, screen_height)


@dataclass(frozen=True)
class Screenshot:
    """An encoded screenshot and the geometry it was taken at."""

    data: bytes
    """The encoded image."""
    format: ImageFormat
    """``png`` or ``jpeg``."""
    width: int
    """Width of the image (the scaled size when a scaling was asked for)."""
    height: int
    """Height of the image."""
    scaling: Scaling | None
    """Maps the image's coordinates back to the screen's, when the image was scaled."""

    @property
    def media_type(self) -> str:
        return f"image/{self.format}"


def encode(
    frame: Frame,
    format: ImageFormat,
    *,
    quality: int = 85,
    size: tuple[int, int] | None = None,
    box: tuple[int, int, int, int] | None = None,
) -> bytes:
    """Encode a frame as PNG (zlib level 1: fast) or JPEG, resized to ``size`` if given;
    with ``box`` (left, top, right, bottom), only that region (a zoom: resized with Lanczos).

    Resizing uses Pillow's Hamming filter (bilinear speed, sharper downscales).
    """
    if format not in ("png", "jpeg"):
        raise ValueError(f"unknown image format {format!r}; use 'png' or 'jpeg'")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be 1..100, not {quality}")
    image = frame.to_image()
    if box is not None:
        image = image.crop(box)
    if size is not None and size != image.size:
        w, h = size
        if w <= 0 or h <= 0:
            raise ValueError(f"bad image size {w}x{h}")
        if box is not None:
            image = image.resize(size, Image.Resampling.LANCZOS)
        else:
            image = image.resize(size, Image.Resampling.HAMMING, reducing_gap=3.0)
    out = io.BytesIO()
    if format == "png":
        image.save(out, "PNG", compress_level=1)
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()
