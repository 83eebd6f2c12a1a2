"""The route tests start no Ray: run on their own, in a process where nothing else started
it, each one checks on the way out that Ray is still not initialised (tests/fakes/runtime_app.py)
(a route that called into Ray would start it, or fail without a cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_the_route_tests_pass_in_a_process_that_never_starts_ray() -> None:
    files = sorted(str(p) for p in TESTS.glob("test_routes_*.py") if p.name != Path(__file__).name)
    assert len(files) >= 5, files
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=TESTS.parent.parent,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "error" not in done.stdout.splitlines()[-1]
