"""Key names to X keysyms, and the pool of spare keycodes that types what the keymap lacks.

Names are xdotool/X keysym names (``Return``, ``BackSpace``, ``KP_Enter``, ``XF86AudioMute``),
matched case-insensitively, plus the aliases both computer-use protocols send (OpenAI's
``CTRL``, ``ENTER``, ``ARROWLEFT``, ``PAGEUP``, ``CMD``; Anthropic's ``ctrl``, ``super``), single
characters (``a``, ``A``, ``/``, ``é``), ``U20AC``-style code points and ``0x...`` keysyms.

Example:
    >>> from orchestrator.desktop._keys import parse_combo
    >>> [hex(k) for k in parse_combo("ctrl+shift+t")]
    ['0xffe3', '0xffe1', '0x74']
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "KeycodePool",
    "UnknownKeyError",
    "keysym_for_char",
    "parse_combo",
    "parse_keys",
    "text_keysyms",
]

XK_RETURN = 0xFF0D
XK_TAB = 0xFF09
XK_BACKSPACE = 0xFF08
XK_ESCAPE = 0xFF1B

_UNICODE_KEYSYM_BASE = 0x01000000

# Aliases (lower case) -> X keysym name. Everything else is an X keysym name, any case.
_ALIASES: dict[str, str] = {
    # Modifiers. "meta"/"cmd"/"win" mean the OS key (Playwright's Meta): Super on Linux;
    # the X keysym Meta_L is still reachable by its exact name.
    "ctrl": "Control_L",
    "control": "Control_L",
    "ctl": "Control_L",
    "lctrl": "Control_L",
    "rctrl": "Control_R",
    "shift": "Shift_L",
    "lshift": "Shift_L",
    "rshift": "Shift_R",
    "alt": "Alt_L",
    "lalt": "Alt_L",
    "ralt": "Alt_R",
    "option": "Alt_L",
    "opt": "Alt_L",
    "altgr": "ISO_Level3_Shift",
    "super": "Super_L",
    "meta": "Super_L",
    "cmd": "Super_L",
    "command": "Super_L",
    "win": "Super_L",
    "windows": "Super_L",
    "hyper": "Hyper_L",
    # Editing and navigation.
    "enter": "Return",
    "return": "Return",
    "esc": "Escape",
    "escape": "Escape",
    "space": "space",
    "spacebar": "space",
    "tab": "Tab",
    "backspace": "BackSpace",
    "bksp": "BackSpace",
    "delete": "Delete",
    "del": "Delete",
    "insert": "Insert",
    "ins": "Insert",
    "arrowup": "Up",
    "arrowdown": "Down",
    "arrowleft": "Left",
    "arrowright": "Right",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
    "pageup": "Page_Up",
    "pgup": "Page_Up",
    "pagedown": "Page_Down",
    "pgdn": "Page_Down",
    "home": "Home",
    "end": "End",
    "capslock": "Caps_Lock",
    "numlock": "Num_Lock",
    "scrolllock": "Scroll_Lock",
    "printscreen": "Print",
    "prtsc": "Print",
    "prtscr": "Print",
    "contextmenu": "Menu",
    "apps": "Menu",
    # Punctuation by name.
    "dot": "period",
    "backtick": "grave",
    "quote": "apostrophe",
    "doublequote": "quotedbl",
    # Media keys.
    "volumeup": "XF86AudioRaiseVolume",
    "volumedown": "XF86AudioLowerVolume",
    "volumemute": "XF86AudioMute",
    "mute": "XF86AudioMute",
    "mediaplaypause": "XF86AudioPlay",
    "playpause": "XF86AudioPlay",
    "medianexttrack": "XF86AudioNext",
    "mediaprevioustrack": "XF86AudioPrev",
    "mediastop": "XF86AudioStop",
    "browserback": "XF86Back",
    "browserforward": "XF86Forward",
    "browserrefresh": "XF86Reload",
}

_HINT = "use xdotool names such as ctrl, shift, Return, a"


class UnknownKeyError(ValueError):
    """A key name that is neither an X keysym name, an alias nor a single character."""

    def __init__(self, name: str, suggestion: str | None = None) -> None:
        self.name = name
        more = f" (did you mean {suggestion!r}?)" if suggestion else ""
        super().__init__(f"unknown key {name!r}; {_HINT}{more}")


def _load_keysym_names() -> tuple[dict[str, int], dict[str, int]]:
    """Every keysym name python-xlib knows, exactly and folded to lower case."""
    import Xlib.keysymdef  # local import: keeps module import cheap when unused

    exact: dict[str, int] = {}
    for info in pkgutil.iter_modules(Xlib.keysymdef.__path__):
        module = importlib.import_module(f"Xlib.keysymdef.{info.name}")
        for attr, value in vars(module).items():
            if attr.startswith("XK_") and isinstance(value, int):
                name = attr[3:]
                exact.setdefault(name, value)
                if name.startswith("XF86_"):  # python-xlib spells XF86AudioMute XF86_AudioMute
                    exact.setdefault("XF86" + name[5:], value)
    exact.setdefault("EuroSign", 0x20AC)  # X's "currency" group, which python-xlib lacks
    folded: dict[str, int] = {}
    for name, value in exact.items():
        low = name.lower()
        # On a case-only clash (Aacute/aacute) the all-lower-case name wins.
        if low not in folded or name == low:
            folded[low] = value
    return exact, folded


_EXACT, _FOLDED = _load_keysym_names()
_UNICODE_NAME = re.compile(r"^[uU]([0-9a-fA-F]{4,6})$")
_HEX_KEYSYM = re.compile(r"^0[xX]([0-9a-fA-F]{1,8})$")


def keysym_for_char(ch: str) -> int | None:
    """The keysym that types ``ch``: Latin-1 directly, else the Unicode keysym; None for
    control characters other than newline (Return) and tab (Tab)."""
    cp = ord(ch)
    if ch in "\n\r":
        return XK_RETURN
    if ch == "\t":
        return XK_TAB
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    if cp < 0x20 or 0x7F <= cp < 0xA0:
        return None
    return _UNICODE_KEYSYM_BASE + cp


def _resolve(name: str) -> int:
    if len(name) == 1:
        ks = keysym_for_char(name)
        if ks is None:
            raise UnknownKeyError(name)
        return ks
    low = name.lower()
    alias = _ALIASES.get(low)
    if alias is not None:
        return _EXACT[alias]
    if name in _EXACT:
        return _EXACT[name]
    if low in _FOLDED:
        return _FOLDED[low]
    if m := _UNICODE_NAME.match(name):
        cp = int(m.group(1), 16)
        ks = keysym_for_char(chr(cp)) if cp <= 0x10FFFF else None
        if ks is not None:
            return ks
    elif m := _HEX_KEYSYM.match(name):
        return int(m.group(1), 16)
    close = difflib.get_close_matches(low, [*_ALIASES, *_FOLDED], n=1, cutoff=0.75)
    suggestion = None
    if close:
        suggestion = close[0] if close[0] in _ALIASES else _canonical_name(close[0])
    raise UnknownKeyError(name, suggestion)


def _canonical_name(folded: str) -> str:
    value = _FOLDED[folded]
    return next((n for n, v in _EXACT.items() if v == value and n.lower() == folded), folded)


def _split_combo(combo: str) -> list[str]:
    """``"ctrl+shift+t"`` -> ``["ctrl", "shift", "t"]``; a ``+`` key is allowed (``"ctrl++"``)."""
    parts: list[str] = []
    rest = combo
    while rest:
        i = rest.find("+", 1)  # from 1: a leading "+" is the plus key itself
        if i == -1:
            parts.append(rest)
            break
        parts.append(rest[:i])
        rest = rest[i + 1 :]
        if not rest:
            raise UnknownKeyError(combo)
    cleaned = [p.strip() or p for p in parts]  # " " alone stays the space key
    if not cleaned or any(p == "" for p in cleaned):
        raise UnknownKeyError(combo)
    return cleaned


def parse_keys(entries: Sequence[str]) -> list[int]:
    """The keysyms of one chord given as entries, each a key or a ``+``-joined combo.

    Duplicates are dropped (order kept). In a chord of several keys a letter means its key,
    whatever its case (OpenAI sends ``["CTRL", "C"]``), so shift must be named to be held;
    a letter alone keeps its case (``"A"`` types a capital A).
    """
    parts = [p for entry in entries for p in _split_combo(entry)]
    if len(parts) > 1:
        parts = [p.lower() if len(p) == 1 else p for p in parts]
    keysyms: list[int] = []
    for part in parts:
        ks = _resolve(part)
        if ks not in keysyms:
            keysyms.append(ks)
    return keysyms


def parse_combo(combo: str) -> list[int]:
    """The keysyms of a ``+``-joined combo such as ``"ctrl+shift+t"``, in order.

    Raises ``UnknownKeyError`` (a ``ValueError``) for a name it does not know.
    """
    return parse_keys([combo])


def text_keysyms(text: str) -> list[int]:
    """The keysym of each character to type (``\\r\\n`` is one Return).

    Raises ``ValueError`` naming the first control character that cannot be typed.
    """
    keysyms: list[int] = []
    prev = ""
    for i, ch in enumerate(text):
        if ch == "\n" and prev == "\r":
            prev = ch
            continue
        ks = keysym_for_char(ch)
        if ks is None:
            raise ValueError(
                f"cannot type control character U+{ord(ch):04X} at position {i}; "
                "use a keypress action for special keys"
            )
        keysyms.append(ks)
        prev = ch
    return keysyms


@dataclass
class _Loan:
    keycode: int
    last_used: float


class KeycodePool:
    """Spare keycodes lent to keysyms missing from the keymap, least recently used first out.

    A keysym keeps its keycode while it is lent, so typing it again needs no remapping; that
    avoids the race where an application reads a keycode after it was remapped again.
    Pure bookkeeping: the X layer does the remapping and passes the clock in.

    Example:
        >>> pool = KeycodePool([200, 201])
        >>> pool.assign([0x10065E5], now=0.0)
        [(200, 16803301, None)]
        >>> pool.keycode(0x10065E5, now=1.0)
        200
    """

    def __init__(self, keycodes: Iterable[int]) -> None:
        self._free: list[int] = sorted(set(keycodes))
        self._lent: OrderedDict[int, _Loan] = OrderedDict()  # keysym -> loan, LRU first

    @property
    def capacity(self) -> int:
        """How many keysyms can be lent at once."""
        return len(self._free) + len(self._lent)

    @property
    def free(self) -> int:
        """How many keycodes are not lent to any keysym."""
        return len(self._free)

    @property
    def keycodes(self) -> set[int]:
        """Every keycode of the pool, free or lent."""
        return {*self._free, *(loan.keycode for loan in self._lent.values())}

    def lent(self) -> dict[int, int]:
        """keysym -> keycode of the keysyms currently lent a keycode."""
        return {ks: loan.keycode for ks, loan in self._lent.items()}

    def __contains__(self, keysym: object) -> bool:
        return keysym in self._lent

    def keycode(self, keysym: int, now: float) -> int | None:
        """The keycode lent to ``keysym`` (marking it used at ``now``), or None."""
        loan = self._lent.get(keysym)
        if loan is None:
            return None
        loan.last_used = now
        self._lent.move_to_end(keysym)
        return loan.keycode

    def assign(
        self, keysyms: Sequence[int], now: float, keep: Iterable[int] = ()
    ) -> list[tuple[int, int, float | None]]:
        """Lend a keycode to each of ``keysyms`` (none of them lent yet).

        Free keycodes go first, then the least recently used loans not in ``keep`` are taken
        back. Returns ``(keycode, keysym, last_used_of_evicted_or_None)`` per keysym; raises
        ``ValueError`` when the pool cannot hold them all.
        """
        protected = set(keep) | set(keysyms)
        evictable = [ks for ks in self._lent if ks not in protected]
        if len(keysyms) > len(self._free) + len(evictable):
            raise ValueError(
                f"{len(keysyms)} characters missing from the keymap but only "
                f"{len(self._free) + len(evictable)} spare keycodes"
            )
        out: list[tuple[int, int, float | None]] = []
        for ks in keysyms:
            if ks in self._lent:
                raise ValueError(f"keysym {ks:#x} is already lent a keycode")
            if self._free:
                code, prev_use = self._free.pop(0), None
            else:
                old = evictable.pop(0)
                loan = self._lent.pop(old)
                code, prev_use = loan.keycode, loan.last_used
            self._lent[ks] = _Loan(code, now)
            out.append((code, ks, prev_use))
        return out

    def forget(self, keycodes: Iterable[int]) -> None:
        """Drop the loans of keycodes someone else remapped; they leave the pool."""
        gone = set(keycodes)
        for ks in [ks for ks, loan in self._lent.items() if loan.keycode in gone]:
            del self._lent[ks]
        self._free = [k for k in self._free if k not in gone]

    def add_free(self, keycodes: Iterable[int]) -> None:
        """Add keycodes that became spare (unmapped) to the pool."""
        known = self.keycodes
        self._free = sorted({*self._free, *(k for k in keycodes if k not in known)})
