"""The SDK is light: importing it (and what a notebook uses with it: workflows, the command
line's API commands) loads none of the runtime (Ray, Docker, SSH, X11, the model client), and
``start_local()`` without the runtime installed says which extra to install.

Each check runs in a fresh interpreter, so that what this test process imported does not count.
The fresh-virtualenv test (tests/integration/test_sdk_light.py) checks the same on a real
``pip install .`` without extras.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestrator._extras import RUNTIME_HINT, RUNTIME_MODULES

_LOADED = """
import json, sys
{imports}
heavy = {heavy!r}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
"""


def _loaded_after(imports: str) -> list[str]:
    """The runtime's top-level modules in ``sys.modules`` after running ``imports``."""
    heavy = [*RUNTIME_MODULES, "actors", "serve_app"]
    code = _LOADED.format(imports=imports, heavy=heavy)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_sdk_loads_none_of_the_runtime() -> None:
    assert {"ray", "docker", "asyncssh", "Xlib", "mss"} <= set(RUNTIME_MODULES)
    loaded = _loaded_after(
        "import orchestrator.sdk\n"
        "from orchestrator.sdk import AsyncClient, Client, start_local\n"
        "from orchestrator.workflow import load_workflow\n"
        "import orchestrator, orchestrator.domain, orchestrator.errors, orchestrator.actions\n"
        "from orchestrator.desktop import DesktopSpec\n"
        "import orchestrator.cli  # the `orchestrator` command (its API commands are light)"
    )
    assert loaded == []


def test_the_probe_sees_the_runtime_when_it_is_imported() -> None:
    """The positive control: the same probe reports a runtime module that is loaded."""
    loaded = _loaded_after("import orchestrator.sdk\nimport orchestrator.desktop._container")
    assert "docker" in loaded


_WITHOUT_RUNTIME = """
import sys
for name in {heavy!r}:
    sys.modules[name] = None  # as if not installed: import fails, find_spec finds nothing
import orchestrator.local
def not_called(**kwargs):
    raise AssertionError("start_local() went on to start a cluster")
orchestrator.local.up = not_called
from orchestrator.sdk import start_local
try:
    start_local()
except ModuleNotFoundError as e:
    print(e)
"""


def test_start_local_without_the_runtime_names_the_extra() -> None:
    code = _WITHOUT_RUNTIME.format(heavy=["ray", "docker"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert message.startswith("start_local() needs the runtime"), message
    assert "no ray, docker" in message and RUNTIME_HINT in message
    assert "pip install 'orchestrator[runtime]'" in message


def test_the_desktop_package_is_lazy_and_exports_what_it_lists() -> None:
    """``orchestrator.desktop`` loads its modules only when a name is asked for (the SDK reaches
    it through ``DesktopSpec``), and every name in its ``__all__`` resolves."""
    code = (
        "import sys, orchestrator.desktop as d\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator.desktop.')))\n"
        "print(all(getattr(d, name) is not None for name in d.__all__))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    loaded, resolved = done.stdout.strip().splitlines()[-2:]
    assert loaded == "[]" and resolved == "True", done.stdout


_CLI_WITHOUT_RUNTIME = """
import sys
for name in {heavy!r}:
    sys.modules[name] = None  # as if not installed
from orchestrator.cli import main
main({args!r})
"""


@pytest.mark.parametrize("args", [["up"], ["desktops", "reap"]])
def test_runtime_commands_without_the_runtime_name_the_extra(args: list[str]) -> None:
    """A light install's `orchestrator up` (or any command that needs Ray or Docker) says which
    extra to install, with no traceback."""
    code = _CLI_WITHOUT_RUNTIME.format(heavy=["ray", "docker"], args=args)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and RUNTIME_HINT in errors[0], done.stderr
    assert "Traceback" not in done.stderr
