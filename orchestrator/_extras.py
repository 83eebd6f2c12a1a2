"""Which optional parts of the package are installed.

``pip install orchestrator`` brings the SDK only (httpx, pydantic, ...); what runs agents
(Ray, Docker, SSH, X11, the model client) comes with the ``runtime`` extra. Code that needs
the runtime calls ``require_runtime`` first, so that a light install fails with an error
naming the extra rather than with an ``ImportError`` from deep inside the import chain.

Example:
    >>> missing_runtime() == [] or "orchestrator[runtime]" in RUNTIME_HINT
    True
"""

from __future__ import annotations

import importlib.util

__all__ = ["RUNTIME_EXTRA", "RUNTIME_HINT", "RUNTIME_MODULES", "missing_runtime", "require_runtime"]

RUNTIME_EXTRA = "runtime"
"""The extra (``pyproject.toml``) that brings the runtime's dependencies."""
RUNTIME_HINT = f"pip install 'orchestrator[{RUNTIME_EXTRA}]'"
"""What to run to install them."""
RUNTIME_MODULES = ("ray", "docker", "asyncssh", "Xlib", "mss", "openai", "anthropic", "PIL")
"""The top-level modules of the runtime extra's distributions, as imported."""


def missing_runtime() -> list[str]:
    """The runtime's modules that cannot be imported here (found without importing them).

    A directory of the same name without ``__init__.py`` (Ray's ``/tmp/ray``, say, when the
    current directory is ``/tmp``) would import as an empty namespace package: it is no
    installed module, and counts as missing.
    """
    missing = []
    for name in RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            missing.append(name)
    return missing


def require_runtime(what: str) -> None:
    """Raise ``ModuleNotFoundError`` naming the extra when the runtime is not installed.

    ``what`` names the caller in the message, e.g. ``"start_local()"``.
    """
    missing = missing_runtime()
    if missing:
        raise ModuleNotFoundError(
            f"{what} needs the runtime, which is not installed here (no "
            f"{', '.join(missing)}): {RUNTIME_HINT}",
            name=missing[0],
        )
