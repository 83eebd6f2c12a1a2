"""asyncssh, imported without cryptography's DSA deprecation warnings.

asyncssh names cryptography's DSA classes in its annotations, and cryptography warns at each
name (DSA is deprecated there) when asyncssh is imported: five lines on the stderr of every
CLI command and Ray worker. No DSA key is ever made or accepted here. Exactly that warning
class, raised from asyncssh's own modules, is ignored; every other warning still shows.
Every module of this package takes asyncssh from here, so the filter is always in place first.
"""

from __future__ import annotations

import warnings

from cryptography.utils import CryptographyDeprecationWarning

warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning, module=r"asyncssh\.")

import asyncssh  # noqa: E402 - after the filter above
from asyncssh.constants import EXTENDED_DATA_STDERR, OPEN_CONNECT_FAILED  # noqa: E402

__all__ = ["EXTENDED_DATA_STDERR", "OPEN_CONNECT_FAILED", "asyncssh"]
