"""The exception tree drawn in ``orchestrator/errors.py``'s docstring is the real one.

Every module of ``orchestrator``, ``actors`` and ``serve_app`` is imported, the subclasses of
``OrchestratorError`` are collected from the classes themselves, drawn, and compared with the
docstring's drawing (names, nesting and extra bases; the descriptions are free text). A class
added anywhere, moved, or re-parented without redrawing fails here.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import re
import sys
from types import ModuleType

import pytest

from orchestrator import errors
from orchestrator.errors import OrchestratorError

_PACKAGES = ("orchestrator", "actors", "serve_app")
_LINE = re.compile(r"^(?P<tree>[│├└─ ]*)(?P<label>\S+(?: \(also [^)]*\))?)(?:\s{2,}.*)?$")


def _import_everything() -> None:
    for name in _PACKAGES:
        package = importlib.import_module(name)
        for found in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not found.name.endswith("__main__"):
                importlib.import_module(found.name)


def _display(cls: type) -> str:
    """``errors``' own classes and builtins by their name; another module's by the
    shortest public path that exports it (``sdk.ApiError``), else its module's."""
    if cls.__module__ in ("orchestrator.errors", "builtins"):
        return cls.__name__
    parts = cls.__module__.split(".")
    for n in range(1, len(parts) + 1):
        module: ModuleType | None = sys.modules.get(".".join(parts[:n]))
        if module is not None and getattr(module, cls.__name__, None) is cls:
            break
    path = ".".join(parts[1:n] if parts[0] == "orchestrator" else parts[:n])
    return f"{path}.{cls.__name__}" if path else cls.__name__


def _label(cls: type) -> str:
    also = [_display(b) for b in cls.__bases__[1:]]
    return _display(cls) + (f" (also {', '.join(also)})" if also else "")


def _children(cls: type) -> list[type]:
    """The subclasses whose first base is ``cls``: ``errors``' own in their order there,
    then the others by name."""
    order = {c: i for i, c in enumerate(vars(errors).values()) if isinstance(c, type)}
    kids = [k for k in cls.__subclasses__() if k.__bases__[0] is cls]
    return sorted(kids, key=lambda k: (k not in order, order.get(k, 0), _display(k)))


def draw(root: type) -> list[str]:
    """The tree under ``root``, one class a line, as the docstring draws it."""
    lines = [_display(root)]

    def walk(cls: type, prefix: str) -> None:
        kids = _children(cls)
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(prefix + ("└── " if last else "├── ") + _label(kid))
            walk(kid, prefix + ("    " if last else "│   "))

    walk(root, "")
    return lines


def drawn(doc: str) -> list[str]:
    """The drawing in a docstring, descriptions left out."""
    lines = doc.splitlines()
    start = lines.index("    OrchestratorError")
    out = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        m = _LINE.match(line[4:])
        assert m is not None, f"not a line of the tree: {line!r}"
        out.append(m["tree"] + m["label"])
    return out


def test_the_docstring_draws_the_real_tree() -> None:
    _import_everything()
    assert errors.__doc__ is not None
    real, doc = draw(OrchestratorError), drawn(errors.__doc__)
    assert doc == real, "redraw errors.py's tree as:\n" + "\n".join(real)


def test_the_check_sees_a_class_missing_from_the_drawing() -> None:
    class LateError(errors.DesktopError):
        pass

    try:
        assert any(line.endswith(".LateError") for line in draw(OrchestratorError))
        assert errors.__doc__ is not None
        assert drawn(errors.__doc__) != draw(OrchestratorError)
    finally:
        del LateError
        gc.collect()  # a class is in a cycle (its __mro__): gone from __subclasses__ now


@pytest.mark.parametrize(
    ("cls", "label"),
    [
        (errors.ImageNotFoundError, "ImageNotFoundError (also ConfigError)"),
        (errors.QuotaExceededError, "QuotaExceededError"),
    ],
)
def test_labels_name_the_extra_bases(cls: type, label: str) -> None:
    assert _label(cls) == label
