"""Key names -> X keysyms, and the spare-keycode pool (pure logic, nothing started)."""

from __future__ import annotations

import pytest

from orchestrator.desktop._keys import (
    KeycodePool,
    UnknownKeyError,
    keysym_for_char,
    parse_combo,
    parse_keys,
    text_keysyms,
)

CONTROL_L, SHIFT_L, ALT_L, SUPER_L = 0xFFE3, 0xFFE1, 0xFFE9, 0xFFEB
RETURN, TAB, ESCAPE, BACKSPACE, DELETE = 0xFF0D, 0xFF09, 0xFF1B, 0xFF08, 0xFFFF
UP, DOWN, LEFT, RIGHT = 0xFF52, 0xFF54, 0xFF51, 0xFF53
PAGE_UP, PAGE_DOWN, HOME, END, INSERT = 0xFF55, 0xFF56, 0xFF50, 0xFF57, 0xFF63


@pytest.mark.parametrize(
    ("name", "keysym"),
    [
        # OpenAI keypress names (upper case)
        ("CTRL", CONTROL_L),
        ("ALT", ALT_L),
        ("SHIFT", SHIFT_L),
        ("CMD", SUPER_L),
        ("META", SUPER_L),
        ("SUPER", SUPER_L),
        ("WIN", SUPER_L),
        ("OPTION", ALT_L),
        ("ENTER", RETURN),
        ("ESC", ESCAPE),
        ("ESCAPE", ESCAPE),
        ("SPACE", 0x20),
        ("TAB", TAB),
        ("BACKSPACE", BACKSPACE),
        ("DELETE", DELETE),
        ("ARROWUP", UP),
        ("ARROWDOWN", DOWN),
        ("ARROWLEFT", LEFT),
        ("ARROWRIGHT", RIGHT),
        ("PAGEUP", PAGE_UP),
        ("PAGEDOWN", PAGE_DOWN),
        ("HOME", HOME),
        ("END", END),
        ("INSERT", INSERT),
        ("CAPSLOCK", 0xFFE5),
        ("F1", 0xFFBE),
        ("F12", 0xFFC9),
        # xdotool / Anthropic names, any case
        ("ctrl", CONTROL_L),
        ("super", SUPER_L),
        ("Return", RETURN),
        ("return", RETURN),
        ("KP_Enter", 0xFF8D),
        ("kp_enter", 0xFF8D),
        ("BackSpace", BACKSPACE),
        ("Page_Up", PAGE_UP),
        ("Page_Down", PAGE_DOWN),
        ("Prior", PAGE_UP),
        ("Control_R", 0xFFE4),
        ("Meta_L", 0xFFE7),
        ("ISO_Level3_Shift", 0xFE03),
        ("XF86AudioMute", 0x1008FF12),
        ("xf86audioraisevolume", 0x1008FF13),
        ("XF86_Back", 0x1008FF26),
        ("f5", 0xFFC2),
        ("F24", 0xFFD5),
        ("slash", 0x2F),
        ("minus", 0x2D),
        ("plus", 0x2B),
        ("eacute", 0xE9),
        ("Eacute", 0xC9),
        ("EuroSign", 0x20AC),
        ("Print", 0xFF61),
        ("Menu", 0xFF67),
        ("volumeup", 0x1008FF13),
        # single characters
        ("a", 0x61),
        ("A", 0x41),
        ("1", 0x31),
        ("/", 0x2F),
        ("+", 0x2B),
        ("é", 0xE9),
        ("€", 0x010020AC),
        ("日", 0x010065E5),
        (" ", 0x20),
        # code points and raw keysyms
        ("U20AC", 0x010020AC),
        ("u00e9", 0xE9),
        ("0xff0d", RETURN),
    ],
)
def test_names_resolve_to_keysyms(name: str, keysym: int) -> None:
    assert parse_combo(name) == [keysym]


def test_combos_split_on_plus_and_keep_order() -> None:
    assert parse_combo("ctrl+shift+t") == [CONTROL_L, SHIFT_L, 0x74]
    assert parse_combo("CTRL+ALT+DELETE") == [CONTROL_L, ALT_L, DELETE]
    assert parse_combo("ctrl + c") == [CONTROL_L, 0x63]
    assert parse_combo("ctrl++") == [CONTROL_L, 0x2B]
    assert parse_combo("+") == [0x2B]
    assert parse_combo("super+Return") == [SUPER_L, RETURN]


def test_letters_in_a_chord_are_keys_but_alone_keep_their_case() -> None:
    assert parse_keys(["CTRL", "C"]) == [CONTROL_L, 0x63]
    assert parse_combo("ctrl+A") == [CONTROL_L, 0x61]
    assert parse_combo("ctrl+shift+T") == [CONTROL_L, SHIFT_L, 0x74]
    assert parse_keys(["A"]) == [0x41]
    assert parse_keys(["a"]) == [0x61]


def test_entries_may_be_combos_and_duplicates_are_dropped() -> None:
    assert parse_keys(["ctrl", "ctrl+shift", "t"]) == [CONTROL_L, SHIFT_L, 0x74]


@pytest.mark.parametrize("name", ["foo", "ctrl+foo", "Retrun_", "", "ctrl+", "a+b+", "\x07"])
def test_unknown_names_raise_a_clear_value_error(name: str) -> None:
    with pytest.raises(UnknownKeyError) as info:
        parse_combo(name)
    assert isinstance(info.value, ValueError)
    assert "unknown key" in str(info.value)
    assert "use xdotool names such as ctrl, shift, Return, a" in str(info.value)


def test_unknown_key_message_names_the_key_and_suggests_one() -> None:
    with pytest.raises(UnknownKeyError) as info:
        parse_combo("ctrl+foo")
    assert str(info.value).startswith("unknown key 'foo'; use xdotool names")
    with pytest.raises(UnknownKeyError, match="(?i)did you mean 'backspace'"):
        parse_combo("Backspase")


def test_keysym_for_char() -> None:
    assert keysym_for_char("a") == 0x61
    assert keysym_for_char("ÿ") == 0xFF
    assert keysym_for_char("Ā") == 0x01000100
    assert keysym_for_char("😀") == 0x0101F600
    assert keysym_for_char("\n") == RETURN
    assert keysym_for_char("\t") == TAB
    assert keysym_for_char("\x00") is None
    assert keysym_for_char("\x7f") is None
    assert keysym_for_char("\x85") is None


def test_text_keysyms_types_newlines_as_return() -> None:
    assert text_keysyms("a\r\nb\nc\td") == [0x61, RETURN, 0x62, RETURN, 0x63, TAB, 0x64]
    assert text_keysyms("é€") == [0xE9, 0x010020AC]
    assert text_keysyms("") == []


def test_text_keysyms_refuses_control_characters() -> None:
    with pytest.raises(ValueError, match=r"U\+0007 at position 2"):
        text_keysyms("ab\x07c")


def test_pool_lends_free_keycodes_first_and_keeps_them() -> None:
    pool = KeycodePool([93, 8, 97])
    assert pool.capacity == 3
    loans = pool.assign([0xE9, 0x20AC], now=1.0)
    assert loans == [(8, 0xE9, None), (93, 0x20AC, None)]
    assert 0xE9 in pool
    assert pool.keycode(0xE9, now=2.0) == 8
    assert pool.keycode(0x41, now=2.0) is None
    assert pool.lent() == {0x20AC: 93, 0xE9: 8}
    assert pool.keycodes == {8, 93, 97}


def test_pool_evicts_the_least_recently_used_and_reports_when_it_was_used() -> None:
    pool = KeycodePool([10, 11])
    pool.assign([1, 2], now=0.0)
    pool.keycode(1, now=5.0)  # 2 is now the least recently used
    assert pool.assign([3], now=6.0) == [(11, 3, 0.0)]
    assert pool.lent() == {1: 10, 3: 11}
    # keep protects a loan that the current text still needs
    assert pool.assign([4], now=7.0, keep=[1]) == [(11, 4, 6.0)]


def test_pool_refuses_more_than_it_can_hold() -> None:
    pool = KeycodePool([10])
    pool.assign([1], now=0.0)
    with pytest.raises(ValueError, match="only 0 spare keycodes"):
        pool.assign([2], now=1.0, keep=[1])
    with pytest.raises(ValueError, match="2 characters"):
        pool.assign([2, 3], now=1.0)


def test_pool_forgets_keycodes_taken_by_others_and_adds_new_spares() -> None:
    pool = KeycodePool([10, 11, 12])
    pool.assign([1], now=0.0)
    pool.forget([10, 12])
    assert pool.lent() == {}
    assert pool.keycodes == {11}
    pool.add_free([12, 11])
    assert pool.keycodes == {11, 12}
    assert pool.capacity == 2
