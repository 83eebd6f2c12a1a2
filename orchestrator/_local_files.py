"""The files of a local cluster under its data directory (``orchestrator.local``).

- ``local.json`` (``STATE_FILE``): the running cluster (Ray address, API and dashboard URLs,
  the head's pid and its owner);
- ``api-keys`` (``KEYS_FILE``): the API's key file, ``default:sha256:<hex>`` (mode 0600);
- ``api-key`` (``CLIENT_KEY_FILE``): the clear key of tenant ``default``, for clients (0600);
- ``local.log`` (``LOG_FILE``): the head's output and the deploy and teardown steps';
- ``.local.lock``: one ``up``/``down`` at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from ._flock import file_lock
from .errors import ConfigError

__all__ = [
    "CLIENT_KEY_FILE",
    "KEYS_FILE",
    "LOG_FILE",
    "STATE_FILE",
    "TENANT",
    "data_dir_of",
    "ensure_keys",
    "locked",
    "log_tail",
    "read_state",
    "remove_state",
    "write_private",
    "write_state",
]

TENANT = "default"
"""The tenant of the key ``up()`` writes."""
STATE_FILE = "local.json"
KEYS_FILE = "api-keys"
CLIENT_KEY_FILE = "api-key"
LOG_FILE = "local.log"


def data_dir_of(data_dir: Path | str | None) -> Path:
    """``data_dir`` made absolute; None: ``ORCHESTRATOR_DATA_DIR`` (``settings().data_dir``)."""
    if data_dir is None:
        from .config import settings

        data_dir = settings().data_dir
    return Path(data_dir).expanduser().resolve()


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_keys(data_dir: Path | str | None = None) -> tuple[Path, str]:
    """The API key file (hashed) and the clear key of tenant ``default``, made if missing.

    The clear key lives in ``api-key``; ``api-keys`` holds its sha256 digest as the line
    ``default:sha256:<hex>`` beside any other tenants' lines someone added. Both are 0600.
    Returns the key file's path and the clear key.
    """
    d = data_dir_of(data_dir)
    client_file, keys_file = d / CLIENT_KEY_FILE, d / KEYS_FILE
    key = client_file.read_text(encoding="utf-8").strip() if client_file.exists() else ""
    if not key:
        key = secrets.token_urlsafe(32)
        write_private(client_file, key + "\n")
    elif client_file.stat().st_mode & 0o077:
        client_file.chmod(0o600)
    line = f"{TENANT}:sha256:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"
    lines = keys_file.read_text(encoding="utf-8").splitlines() if keys_file.exists() else []
    if line not in lines:
        others = [x for x in lines if not x.strip().startswith(f"{TENANT}:")]
        write_private(keys_file, "\n".join([*others, line]) + "\n")
    elif keys_file.stat().st_mode & 0o077:
        keys_file.chmod(0o600)
    return keys_file, key


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The cluster ``local.json`` describes, or None when there is none (``ConfigError`` when
    it cannot be read)."""
    try:
        state: dict[str, Any] = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {data_dir / STATE_FILE}: {e}") from None
    return state


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    write_private(data_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def remove_state(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (data_dir / STATE_FILE).unlink()


def locked(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """One ``up``/``down`` at a time per data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return file_lock(data_dir / ".local.lock")


def log_tail(data_dir: Path, lines: int = 15) -> str:
    """The last ``lines`` of ``local.log`` (for an error message)."""
    try:
        text = (data_dir / LOG_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
