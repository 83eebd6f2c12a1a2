"""Coordinate spaces: the sizes sent and answered in at 1280x800, 1920x1080 and 1024x768,
and property tests of the round trip between a model's pixels and the screen's."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from orchestrator.coords import (
    CoordinateSpace,
    FixedSpace,
    GridSpace,
    Mapper,
    NativeSpace,
    NormSpace,
    OutOfSpaceError,
    Size,
    check_screenshot_size,
    image_size,
    model_size,
    smart_resize,
)
from orchestrator.errors import ConfigError

SCREENS: list[Size] = [(1280, 800), (1920, 1080), (1024, 768)]

SMALL_28 = 1280 * 28 * 28
"""A common image budget of UI-TARS and Qwen2.5-VL deployments (``max_pixels``)."""
SMALL_32 = 1280 * 32 * 32

# space -> (image size, model size) for each of SCREENS, worked out by hand:
# - FixedSpace: 1920x1080 is 16:9 like FWXGA 1366x768 and larger: 1366x768; 1280x800 is
#   WXGA's own 16:10 and 1024x768 XGA's own 4:3, and both are under 1568 px and 1.15 Mpx:
#   unchanged.
# - GridSpace(28): sides rounded to multiples of 28: 1280 -> 46*28 = 1288, 800 -> 29*28 = 812,
#   1920 -> 69*28 = 1932, 1080 -> 39*28 = 1092, 1024 -> 37*28 = 1036, 768 -> 27*28 = 756
#   (all under 16384*28*28 pixels).
# - GridSpace(28, max 1280*28*28 = 1,003,520): 1288x812 = 1,045,856 is over: beta =
#   sqrt(1,024,000 / 1,003,520) = 1.01015, 1280/beta = 1267.1 -> 45*28 = 1260, 800/beta =
#   792.0 -> 28*28 = 784. 1932x1092 is over: beta = 1.4375, 1335.7 -> 47*28 = 1316, 751.3 ->
#   26*28 = 728. 1036x756 = 783,216 fits.
# - GridSpace(32): 1280 = 40*32, 800 = 25*32, 1920 = 60*32, 1080 -> 34*32 = 1088 (33.75
#   rounds up), 1024 = 32*32, 768 = 24*32.
# - GridSpace(32, max 1280*32*32 = 1,310,720): 1920x1088 is over: beta = 1.25778, 1526.5 ->
#   47*32 = 1504, 858.7 -> 26*32 = 832; the others fit.
# - NormSpace: the image is a GridSpace(28)'s; 0..1000 answers in (1000, 1000), 0..1 in
#   fractions of the image.
EXPECTED: list[tuple[str, Any, list[Size], list[Size] | None]] = [
    ("native", NativeSpace(), SCREENS, None),
    ("fixed", FixedSpace(), [(1280, 800), (1366, 768), (1024, 768)], None),
    ("grid28", GridSpace(), [(1288, 812), (1932, 1092), (1036, 756)], None),
    (
        "grid28-small",
        GridSpace(max_pixels=SMALL_28),
        [(1260, 784), (1316, 728), (1036, 756)],
        None,
    ),
    ("grid32", GridSpace(factor=32), [(1280, 800), (1920, 1088), (1024, 768)], None),
    (
        "grid32-small",
        GridSpace(factor=32, max_pixels=SMALL_32),
        [(1280, 800), (1504, 832), (1024, 768)],
        None,
    ),
    (
        "norm1000",
        NormSpace(scale=1000),
        [(1288, 812), (1932, 1092), (1036, 756)],
        [(1000, 1000)] * 3,
    ),
    ("norm1", NormSpace(scale=1), [(1288, 812), (1932, 1092), (1036, 756)], None),
]

CASES = [
    pytest.param(
        space, screen, image, model[i] if model else image, id=f"{name}-{screen[0]}x{screen[1]}"
    )
    for name, space, images, model in EXPECTED
    for i, (screen, image) in enumerate(zip(SCREENS, images, strict=True))
]
"""(space, screen, image size, model size) for every space and screen."""


@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_image_and_model_sizes(
    space: CoordinateSpace, screen: Size, image: Size, model: Size
) -> None:
    assert image_size(space, screen) == image
    assert model_size(space, screen) == model
    # a space survives JSON as the config carries it
    adapter: TypeAdapter[CoordinateSpace] = TypeAdapter(CoordinateSpace)
    assert adapter.validate_json(adapter.dump_json(space)) == space


def _mapper(space: CoordinateSpace, screen: Size) -> Mapper:
    return Mapper(model_size=model_size(space, screen), screen_size=screen)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_model_pixels_round_trip(
    space: CoordinateSpace, screen: Size, image: Size, model: Size, data: st.DataObject
) -> None:
    """Every model pixel lands on the screen, on a screen pixel that overlaps it; where the
    model's axis is no larger than the screen's, the screen pixel maps back to it."""
    m = _mapper(space, screen)
    (mw, mh), (sw, sh) = model, screen
    px = data.draw(st.integers(0, mw - 1), label="x")
    py = data.draw(st.integers(0, mh - 1), label="y")
    sx, sy = m.point(px, py)
    assert 0 <= sx < sw and 0 <= sy < sh
    back = m.to_model(sx, sy)
    for p, s, mm, ss, b in ((px, sx, mw, sw, back[0]), (py, sy, mh, sh, back[1])):
        # the screen pixel holds the model pixel's centre: the error is under one screen
        # pixel, and so under one model pixel's width when the model is the coarser
        centre = (p + 0.5) * ss / mm
        assert s <= centre < s + 1
        assert abs(s + 0.5 - centre) <= 0.5
        # ... and the screen pixel overlaps the model pixel
        assert s < (p + 1) * ss / mm and s + 1 > p * ss / mm
        if mm <= ss:
            assert b == p


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_screen_pixels_round_trip(
    space: CoordinateSpace, screen: Size, image: Size, model: Size, data: st.DataObject
) -> None:
    """Where the model's axis is larger than the screen's, every screen pixel survives a
    trip through the model's space (a cursor shown to the model and clicked on)."""
    m = _mapper(space, screen)
    (mw, mh), (sw, sh) = model, screen
    sx = data.draw(st.integers(0, sw - 1), label="x")
    sy = data.draw(st.integers(0, sh - 1), label="y")
    mx, my = m.to_model(sx, sy)
    assert 0 <= mx < mw and 0 <= my < mh
    px, py = m.point(mx, my)
    if mw >= sw:
        assert px == sx
    if mh >= sh:
        assert py == sy


@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_every_pixel_of_each_axis_round_trips(
    space: CoordinateSpace, screen: Size, image: Size, model: Size
) -> None:
    """The same, exhaustively (one axis at a time, so it stays fast)."""
    m = _mapper(space, screen)
    for axis in (0, 1):
        mm, ss = model[axis], screen[axis]
        for p in range(mm):
            s = m.point(p, 0)[0] if axis == 0 else m.point(0, p)[1]
            assert 0 <= s < ss
            if mm <= ss:
                back = m.to_model(s, 0)[0] if axis == 0 else m.to_model(0, s)[1]
                assert back == p, (axis, p, s, back)
        if mm > ss:
            for s in range(ss):
                p = m.to_model(s, 0)[0] if axis == 0 else m.to_model(0, s)[1]
                again = m.point(p, 0)[0] if axis == 0 else m.point(0, p)[1]
                assert again == s, (axis, s, p, again)


@PROPERTY
@given(data=st.data())
@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_fractions_map_like_the_pixel_they_scale_to(
    space: CoordinateSpace, screen: Size, image: Size, model: Size, data: st.DataObject
) -> None:
    m = _mapper(space, screen)
    mw, mh = model
    px = data.draw(st.integers(0, mw), label="x")
    py = data.draw(st.integers(0, mh), label="y")
    assert m.fraction(px / mw, py / mh) == m.point(px, py)
    fx = data.draw(st.floats(0, 1), label="fx")
    fy = data.draw(st.floats(0, 1), label="fy")
    sx, sy = m.fraction(fx, fy)
    assert 0 <= sx < screen[0] and 0 <= sy < screen[1]
    # a fraction lands within a pixel of where it points on the screen
    assert abs(sx - fx * screen[0]) <= 1 and abs(sy - fy * screen[1]) <= 1


@PROPERTY
@given(
    x=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    y=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
)
@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_a_point_is_on_the_screen_or_out_of_space(
    space: CoordinateSpace, screen: Size, image: Size, model: Size, x: float, y: float
) -> None:
    m = _mapper(space, screen)
    mw, mh = model
    if 0 <= x <= mw and 0 <= y <= mh:
        sx, sy = m.point(x, y)
        assert 0 <= sx < screen[0] and 0 <= sy < screen[1]
        if not x.is_integer():  # a point between pixels: the screen pixel under it
            assert sx == min(math.floor(x * screen[0] / mw), screen[0] - 1)
    else:
        with pytest.raises(OutOfSpaceError, match=f"{mw}x{mh}"):
            m.point(x, y)


@pytest.mark.parametrize(("space", "screen", "image", "model"), CASES)
def test_edges_and_bad_values(
    space: CoordinateSpace, screen: Size, image: Size, model: Size
) -> None:
    m = _mapper(space, screen)
    (mw, mh), (sw, sh) = model, screen
    assert m.point(0, 0) == (0, 0)
    assert m.point(mw, mh) == (sw - 1, sh - 1)  # the far edge is allowed, on the last pixel
    assert m.fraction(0, 0) == (0, 0) and m.fraction(1, 1) == (sw - 1, sh - 1)
    bad: list[Any] = [
        (-1, 0),
        (0, -1),
        (mw + 1, 0),
        (0, mh + 1),
        (mw + 0.001, 0),
        (-0.001, 0),
        (math.nan, 0),
        (0, math.inf),
        (-math.inf, 0),
        (True, 0),
        (0, False),
        ("3", 4),
        (None, 0),
    ]
    for x, y in bad:
        with pytest.raises(OutOfSpaceError):
            m.point(x, y)
    for fx, fy in [(1.01, 0), (0, -0.01), (math.nan, 0.5), (0.5, math.inf), (True, 0.5), (2, 0)]:
        with pytest.raises(OutOfSpaceError):
            m.fraction(fx, fy)
    assert issubclass(OutOfSpaceError, ValueError)
    # to_model clamps a cursor off the screen to its edge
    assert m.to_model(-5, -5) == m.to_model(0, 0)
    assert m.to_model(sw + 5, sh + 5) == m.to_model(sw - 1, sh - 1)


@settings(max_examples=300, deadline=None)
@given(
    mw=st.integers(1, 5000),
    sw=st.integers(1, 5000),
    data=st.data(),
)
def test_mapper_round_trip_for_any_sizes(mw: int, sw: int, data: st.DataObject) -> None:
    """The round trip holds for any pair of sizes, not only the screens above."""
    m = Mapper(model_size=(mw, 1), screen_size=(sw, 1))
    if mw <= sw:
        p = data.draw(st.integers(0, mw - 1))
        assert m.to_model(*m.point(p, 0))[0] == p
    else:
        s = data.draw(st.integers(0, sw - 1))
        assert m.point(*m.to_model(s, 0))[0] == s


def test_bad_sizes_are_refused() -> None:
    for model, screen in [((0, 10), (10, 10)), ((10, 10), (10, -1))]:
        with pytest.raises(ValueError, match="bad"):
            Mapper(model_size=model, screen_size=screen)
    with pytest.raises(ValueError, match="bad screen size"):
        image_size(NativeSpace(), (0, 800))
    with pytest.raises(ValidationError):
        GridSpace(factor=0)
    with pytest.raises(ValidationError, match="min_pixels .* is over max_pixels"):
        GridSpace(min_pixels=1_000_000, max_pixels=500_000)
    with pytest.raises(ValidationError, match="under one 32x32 cell"):
        GridSpace(factor=32, min_pixels=100, max_pixels=1000)
    with pytest.raises(ValidationError):
        NormSpace.model_validate({"scale": 100})


# ---------------------------------------------------------------------- smart_resize

FACTORS = st.sampled_from([14, 28, 32])


@settings(max_examples=400, deadline=None)
@given(
    height=st.integers(1, 8000),
    width=st.integers(1, 8000),
    factor=FACTORS,
    budget=st.sampled_from([(4, 16384), (4, 1280), (256, 1280), (16, 64), (100, 200)]),
)
def test_smart_resize_properties(
    height: int, width: int, factor: int, budget: tuple[int, int]
) -> None:
    """Sides are multiples of ``factor``, the area is within the budget, and each side is
    within one ``factor`` of the original scaled by a common ratio (the aspect is kept)."""
    assume(max(height, width) / min(height, width) <= 200)
    min_pixels, max_pixels = budget[0] * factor * factor, budget[1] * factor * factor
    # sides clamped to one factor can break the budget only for a strip thinner than the
    # budget allows; those are outside the property
    assume(min(height, width) * math.sqrt(max_pixels / (height * width)) >= factor)
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    assert h % factor == 0 and w % factor == 0 and h >= factor and w >= factor
    assert min_pixels <= h * w <= max_pixels
    rounded_h = max(factor, round(height / factor) * factor)
    rounded_w = max(factor, round(width / factor) * factor)
    if rounded_h * rounded_w > max_pixels:
        scale = math.sqrt(max_pixels / (height * width))  # shrunk to the budget
    elif rounded_h * rounded_w < min_pixels:
        scale = math.sqrt(min_pixels / (height * width))  # enlarged to the budget
    else:
        scale = 1.0  # only rounded
    # one common scale for both sides, each side then within a factor of it: the aspect
    # ratio is kept to within a factor's rounding (and float error: a side that scales to
    # a multiple of factor may round a whole factor up)
    slack = factor + 1e-6
    assert abs(h - height * scale) <= slack and abs(w - width * scale) <= slack
    assert (w - factor) * height <= width * (h + factor)
    assert width * (h - factor) <= (w + factor) * height


# Outputs of the reference ``smart_resize`` of qwen-vl-utils (QwenLM/Qwen2-VL,
# qwen-vl-utils/src/qwen_vl_utils/vision_process.py at 487a12d68f64b9301db69ef8d8ef0c72b94b5342;
# the same function is in QwenLM/Qwen3-VL's copy at 004d5e0a): sides rounded with Python's
# round() to multiples of factor, then floor_by_factor(side / beta) when over max_pixels with
# beta = sqrt(h * w / max_pixels), ceil_by_factor(side * beta) when under min_pixels with
# beta = sqrt(min_pixels / (h * w)). (height, width, factor, min_pixels, max_pixels) ->
# (height, width), run on the reference for these inputs.
REFERENCE: list[tuple[tuple[int, int, int, int, int], tuple[int, int]]] = [
    ((800, 1280, 28, 3136, 12845056), (812, 1288)),
    ((1080, 1920, 28, 3136, 12845056), (1092, 1932)),
    ((768, 1024, 28, 3136, 12845056), (756, 1036)),
    ((1080, 1920, 28, 3136, 1003520), (728, 1316)),
    ((800, 1280, 28, 3136, 1003520), (784, 1260)),
    ((1080, 1920, 28, 200704, 1003520), (728, 1316)),
    ((1080, 1920, 32, 3136, 16777216), (1088, 1920)),
    ((1440, 2560, 28, 3136, 2116800), (1064, 1932)),
    ((2160, 3840, 28, 3136, 12845056), (2156, 3836)),
    ((10, 10, 28, 3136, 12845056), (56, 56)),
    ((42, 70, 28, 3136, 12845056), (56, 56)),  # 1.5 and 2.5 both round (to even) to 2
]


@pytest.mark.parametrize(("args", "expected"), REFERENCE)
def test_smart_resize_matches_the_reference(
    args: tuple[int, int, int, int, int], expected: tuple[int, int]
) -> None:
    assert smart_resize(*args) == expected


def test_smart_resize_refuses_what_the_reference_refuses() -> None:
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2020)
    with pytest.raises(ValueError, match="bad image size"):
        smart_resize(0, 100)


@settings(max_examples=300, deadline=None)
@given(w=st.integers(200, 6000), h=st.integers(200, 6000))
def test_fixed_space_never_enlarges_and_stays_under_the_apis_limits(w: int, h: int) -> None:
    """Claude's API shrinks images over ~1.15 Mpx or 1568 px: the screenshot never is."""
    space = FixedSpace()
    iw, ih = image_size(space, (w, h))
    assert 1 <= iw <= w and 1 <= ih <= h
    assert max(iw, ih) <= space.max_long_edge and iw * ih <= space.max_pixels
    if (iw, ih) not in space.targets:  # shrunk to fit: the aspect ratio kept to a pixel
        assert abs(iw * h - ih * w) < max(w, h)  # both sides floored from one scale
    m = Mapper(model_size=(iw, ih), screen_size=(w, h))
    assert m.to_model(*m.point(iw - 1, ih - 1)) == (iw - 1, ih - 1)


# ---------------------------------------------------------------------- review bounds


@pytest.mark.parametrize(
    "huge", [10**400, -(10**400), 10**5000, 2**60], ids=["1e400", "-1e400", "1e5000", "2^60"]
)
def test_huge_integers_are_out_of_space_not_overflow(huge: int) -> None:
    """A model's 10**400 (or 5,000 digits) is a point outside the space, never an
    OverflowError or the int-to-str digit limit's ValueError escaping as a crash."""
    m = Mapper(model_size=(1000, 1000), screen_size=(1920, 1080))
    with pytest.raises(OutOfSpaceError, match="outside") as e:
        m.point(huge, 1)
    assert "bit integer" in str(e.value) and len(str(e.value)) < 200
    with pytest.raises(OutOfSpaceError):
        m.point(1, huge)
    with pytest.raises(OutOfSpaceError):
        m.fraction(huge, 0)
    assert m.point(1000, 1000) == (1919, 1079)


@pytest.mark.parametrize(
    "space",
    [
        {"kind": "grid", "factor": 16384, "min_pixels": 268435456, "max_pixels": 268435456},
        {"kind": "grid", "factor": 65},
        {"kind": "grid", "max_pixels": (1 << 24) + 1},
        {"kind": "grid", "min_pixels": (1 << 20) + 1, "max_pixels": 1 << 24},
        {"kind": "fixed", "targets": [[8192, 4096]]},
        {"kind": "fixed", "max_long_edge": 4097},
        {"kind": "fixed", "max_pixels": (1 << 24) + 1},
        {"kind": "norm", "image": {"kind": "grid", "max_pixels": 1 << 28, "min_pixels": 1 << 28}},
    ],
)
def test_a_tenants_space_cannot_ask_for_a_huge_screenshot(space: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(CoordinateSpace).validate_python(space)


def test_the_largest_spaces_allowed_stay_within_16_megapixels() -> None:
    qwen3 = GridSpace(factor=32, min_pixels=4 * 32 * 32, max_pixels=16384 * 32 * 32)
    for space in (GridSpace(), qwen3, GridSpace(factor=64, min_pixels=1 << 20, max_pixels=1 << 24)):
        w, h = image_size(space, (3840, 2160))
        assert w * h <= 1 << 24
        check_screenshot_size(image_size(space, (1280, 800)), (1280, 800))


def test_a_screenshot_size_over_twice_the_screen_or_4096_is_refused() -> None:
    check_screenshot_size((1932, 1092), (1920, 1080))
    check_screenshot_size((2560, 1600), (1280, 800))
    # an 8K screen shrunk to the default grid budget (4760x2688): over 4096, but smaller
    check_screenshot_size(image_size(GridSpace(), (7680, 4320)), (7680, 4320))
    for size, screen in [
        ((16384, 16384), (1920, 1080)),
        ((2561, 800), (1280, 800)),
        ((1280, 1601), (1280, 800)),
        ((4100, 2000), (3840, 2160)),
        ((7681, 4320), (7680, 4320)),
        ((0, 800), (1280, 800)),
    ]:
        with pytest.raises(ConfigError, match="screenshot .* is refused"):
            check_screenshot_size(size, screen)
