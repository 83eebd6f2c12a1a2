"""Importing the SSH layer (as every CLI command that reaches desktops or agents does, and
every Ray worker) prints no CryptographyDeprecationWarning lines, and the filter that keeps
them quiet is no blanket: the same warning from anywhere else still shows."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import warnings
import actors  # the agents' modules: desktops, SSH
import orchestrator.cli
import orchestrator.desktop._ssh
from cryptography.utils import CryptographyDeprecationWarning
warnings.warn("still shown", CryptographyDeprecationWarning)
warnings.warn("also shown", UserWarning)
"""


def test_importing_the_ssh_layer_prints_no_cryptography_deprecation_warnings() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    lines = done.stderr.splitlines()
    warned = [line for line in lines if "CryptographyDeprecationWarning" in line]
    assert len(warned) == 1 and "still shown" in warned[0], done.stderr
    assert not any("asyncssh" in line for line in lines), done.stderr
    assert any("UserWarning: also shown" in line for line in lines), done.stderr
