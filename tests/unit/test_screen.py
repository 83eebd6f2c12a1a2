"""Frames, exact scaling between model and screen pixels, and image encoding."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError

from orchestrator.desktop._screen import Frame, Scaling, encode


@st.composite
def downscalings(draw: st.DrawFn) -> Scaling:
    sw = draw(st.integers(1, 5000))
    sh = draw(st.integers(1, 5000))
    return Scaling(sw, sh, draw(st.integers(1, sw)), draw(st.integers(1, sh)))


@given(downscalings(), st.data())
def test_model_point_survives_the_round_trip_through_the_screen(
    s: Scaling, data: st.DataObject
) -> None:
    x = data.draw(st.integers(0, s.width - 1))
    y = data.draw(st.integers(0, s.height - 1))
    sx, sy = s.to_screen(x, y)
    assert 0 <= sx < s.screen_width
    assert 0 <= sy < s.screen_height
    assert s.to_model(sx, sy) == (x, y)


@given(downscalings(), st.data())
def test_every_screen_pixel_maps_into_the_model(s: Scaling, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, s.screen_width - 1))
    y = data.draw(st.integers(0, s.screen_height - 1))
    mx, my = s.to_model(x, y)
    assert 0 <= mx < s.width
    assert 0 <= my < s.height


@given(st.integers(1, 5000), st.integers(1, 5000), st.data())
def test_equal_sizes_map_identically(w: int, h: int, data: st.DataObject) -> None:
    s = Scaling(w, h, w, h)
    assert s.is_identity
    x, y = data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, h - 1))
    assert s.to_screen(x, y) == (x, y)
    assert s.to_model(x, y) == (x, y)


def test_to_screen_hits_the_pixel_under_the_model_pixel_centre() -> None:
    s = Scaling(1920, 1200, 1280, 800)  # 1.5x
    assert s.to_screen(0, 0) == (0, 0)  # centre 0.75
    assert s.to_screen(1, 1) == (2, 2)  # centre 2.25
    assert s.to_screen(1279, 799) == (1919, 1199)
    assert s.to_model(1919, 1199) == (1279, 799)
    # the case floor(x * w / W) gets wrong: screen 6 px, model 5 px
    t = Scaling(6, 6, 5, 5)
    assert [t.to_model(*t.to_screen(x, x))[0] for x in range(5)] == [0, 1, 2, 3, 4]


@given(
    st.integers(1, 8000),
    st.integers(1, 8000),
    st.integers(16, 4000),
    st.integers(16, 4000),
)
def test_fit_keeps_the_aspect_ratio_within_the_bounds(sw: int, sh: int, mw: int, mh: int) -> None:
    s = Scaling.fit(sw, sh, mw, mh)
    assert (s.screen_width, s.screen_height) == (sw, sh)
    assert s.width <= min(sw, mw) and s.height <= min(sh, mh)
    if sw <= mw and sh <= mh:
        assert s.is_identity
    else:
        assert s.width == mw or s.height == mh  # one side touches its bound
        # the other side is the proportional size, rounded to a whole pixel (at least one)
        assert abs(s.height - s.width * sh / sw) <= 1 or abs(s.width - s.height * sw / sh) <= 1


def test_fit_examples() -> None:
    assert Scaling.fit(1280, 800, 1024, 768) == Scaling(1280, 800, 1024, 640)
    assert Scaling.fit(1920, 1080, 1280, 1280) == Scaling(1920, 1080, 1280, 720)
    assert Scaling.fit(800, 600, 1024, 768).is_identity
    with pytest.raises(ValueError):
        Scaling.fit(800, 600, 0, 768)


@pytest.mark.parametrize(
    ("screen", "model"),
    [
        ((1280, 800), (1280, 800)),  # WXGA itself: no scaling
        ((1024, 768), (1024, 768)),
        ((1920, 1200), (1280, 800)),
        ((2560, 1600), (1280, 800)),
        ((2048, 1536), (1024, 768)),
        ((1600, 1200), (1024, 768)),
        ((1920, 1080), (1366, 768)),
        ((3840, 2160), (1366, 768)),
        ((1366, 768), (1366, 768)),
        ((1000, 1000), (1000, 1000)),  # no target with this aspect ratio
        ((3440, 1440), (3440, 1440)),
        ((800, 600), (800, 600)),  # smaller than XGA: never scaled up
    ],
)
def test_anthropic_targets(screen: tuple[int, int], model: tuple[int, int]) -> None:
    s = Scaling.anthropic(*screen)
    assert (s.screen_width, s.screen_height) == screen
    assert (s.width, s.height) == model


def test_scaling_is_validated_frozen_and_hashable() -> None:
    with pytest.raises(ValidationError):
        Scaling(0, 800, 10, 10)
    s = Scaling(1280, 800, 1024, 640)
    with pytest.raises((AttributeError, TypeError, ValidationError)):
        s.width = 5  # type: ignore[misc]
    assert {s: 1}[Scaling(1280, 800, 1024, 640)] == 1


def _frame(w: int, h: int) -> Frame:
    """A frame with red at the top left, green at the top right, blue below, white elsewhere."""
    px = bytearray(b"\xff\xff\xff\x00" * (w * h))

    def put(x: int, y: int, bgr: bytes) -> None:
        i = (y * w + x) * 4
        px[i : i + 3] = bgr

    put(0, 0, b"\x00\x00\xff")
    put(w - 1, 0, b"\x00\xff\x00")
    put(0, h - 1, b"\xff\x00\x00")
    return Frame(w, h, px, 0.0)


def test_frame_pixels_are_read_as_rgb() -> None:
    f = _frame(4, 3)
    assert f.size == (4, 3)
    assert f.pixel(0, 0) == (255, 0, 0)
    assert f.pixel(3, 0) == (0, 255, 0)
    assert f.pixel(0, 2) == (0, 0, 255)
    assert f.pixel(1, 1) == (255, 255, 255)
    with pytest.raises(IndexError):
        f.pixel(4, 0)


def test_png_is_lossless_and_the_right_size() -> None:
    f = _frame(64, 40)
    data = encode(f, "png")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    assert img.size == (64, 40)
    rgb = img.convert("RGB")
    assert rgb.getpixel((0, 0)) == (255, 0, 0)
    assert rgb.getpixel((63, 0)) == (0, 255, 0)
    assert rgb.getpixel((0, 39)) == (0, 0, 255)
    assert rgb.getpixel((10, 10)) == (255, 255, 255)


def test_jpeg_is_valid_and_the_right_size() -> None:
    data = encode(_frame(64, 40), "jpeg", quality=70)
    assert data[:3] == b"\xff\xd8\xff"
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    assert img.size == (64, 40)
    r, g, b = img.convert("RGB").getpixel((20, 20))  # type: ignore[misc]
    assert min(r, g, b) > 240  # white stays white


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_encode_resizes_only_when_asked(fmt: str) -> None:
    f = _frame(128, 80)
    img = Image.open(io.BytesIO(encode(f, fmt, size=(64, 40))))  # type: ignore[arg-type]
    assert img.size == (64, 40)
    img = Image.open(io.BytesIO(encode(f, fmt, size=(128, 80))))  # type: ignore[arg-type]
    assert img.size == (128, 80)


def test_encode_rejects_bad_input() -> None:
    f = _frame(8, 8)
    with pytest.raises(ValueError, match="format"):
        encode(f, "gif")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality"):
        encode(f, "jpeg", quality=0)
    with pytest.raises(ValueError, match="size"):
        encode(f, "png", size=(0, 4))
    with pytest.raises(ValueError, match="expected 256"):
        encode(Frame(8, 8, b"\x00" * 10, 0.0), "png")
