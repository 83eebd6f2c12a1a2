"""The shell programs the host sends to a desktop's sshd, as root's login shell runs them.

A command is ``cd``, ``export``s and the caller's script, run by ``bash -lc`` as the desktop
user through a privilege-dropping prefix (``AS_AGENT``), under the image's ``run-command``
(``RUN_COMMAND``): a time limit that is also a child subreaper, so a command past its
deadline is killed with every process it started, those that detached (setsid, nohup, a
double fork) too. Each command first reports its pid, so a cancelled one can be killed
(``KILL``). Files travel through ``tar`` run as the target user (``UNTAR``, ``TAR``), in a
directory entered one component at a time and never through a symbolic link.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = [
    "AGENT_PASSTHROUGH_ENV",
    "AS_AGENT",
    "KILL",
    "KILL_AFTER_S",
    "RUN_COMMAND",
    "TAR",
    "UNTAR",
    "User",
    "as_user",
    "build_command",
]

User = Literal["agent", "root"]
"""Who a command runs as: the unprivileged desktop user or root."""

AS_AGENT: tuple[str, ...] = (
    "setpriv",
    "--reuid=agent",
    "--regid=agent",
    "--init-groups",
    "--reset-env",
)
"""The argv prefix that runs a command as the desktop user (root logs in over SSH).

It must set ``HOME``, drop every privilege and keep the command in sshd's session: exec it
(setpriv), or forward SIGTERM to it (runuser). ``("runuser", "-u", "agent", "--")`` is the
drop-in alternative.
"""

AGENT_PASSTHROUGH_ENV: tuple[str, ...] = ("DISPLAY", "LANG", "LC_ALL", "TZ")
"""Variables of the SSH session (sshd_config ``SetEnv``) handed on to the user's commands,
which the prefix otherwise starts with a clean environment."""

RUN_COMMAND = "/usr/local/bin/run-command"
"""The desktop image's supervisor every command runs under (``desktop_image/run-command``):
``run-command LIMIT_S KILL_AFTER_S COMMAND...``. A child subreaper (no privilege needed):
past the limit, or on TERM, every process of the command's tree, detached or not, gets TERM
and then KILL; a command that ends by itself leaves its background daemons running."""
KILL_AFTER_S = 2.0
"""A timed-out command's processes get SIGTERM, then SIGKILL this much later (all of them)."""

_ARGV_SCRIPT_LIMIT = 100_000  # Linux caps one argv string at 128 KiB; larger scripts use stdin
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Every command first reports, as the first line of its stderr, the pid that ``run-command`` will
# have (exec keeps it; sshd made it a session and process group leader), so that a cancelled
# command can be killed: OpenSSH refuses signal requests in inetd mode (``sshd -i``).
_REPORT_PID = 'echo "$$" >&2; '
KILL = (
    's=$(cat /proc/{pid}/stat 2>/dev/null) || exit 0; set -- ${{s##*")"}}; '
    '[ "$4" = {pid} ] && kill -s TERM -- {pid}'
)
"""Kill a command by its reported pid (``KILL.format(pid=...)``), if it is still the session
leader it was (not a reused pid); run-command passes the TERM on to every process below it
and escalates to KILL."""

# Enter the directory "$1" (relative paths start at the user's home; "." and ".." are taken
# lexically) one component at a time from /, never through a symbolic link, creating the
# missing ones when $2 is "mkdir": a link the agent planted in the path cannot redirect a
# transfer done with root's rights. After each step the working directory must physically be
# the path spelled out, which also catches a directory swapped for a link once checked.
# Exit 2: failed; 3: a component is missing; 5: a link was refused (tar's 1 is a warning).
_WALK = r"""walk() {
  local t p c
  cd || exit 2
  t=$(realpath -m -s -- "$1") || exit 2
  cd / || exit 2
  p=
  IFS=/
  set -f
  for c in ${t#/}; do
    p=$p/$c
    if [ -L "./$c" ]; then
      echo "refusing to follow the symbolic link $p (to $(realpath -m -- "$p")):" \
        "name the path without links" >&2
      exit 5
    fi
    if [ ! -e "./$c" ] && [ "$2" = mkdir ]; then mkdir -- "./$c" || exit 2; fi
    if [ ! -e "./$c" ]; then echo "$p: No such file or directory" >&2; exit 3; fi
    if [ ! -d "./$c" ]; then echo "$p: Not a directory" >&2; exit 2; fi
    if [ ! -x "./$c" ]; then echo "$p: Permission denied" >&2; exit 2; fi
    cd -P -- "./$c" || exit 2
    if [ "$(pwd -P)" != "$p" ]; then
      echo "refusing to follow $p: it was replaced by a symbolic link" >&2
      exit 5
    fi
  done
  unset IFS
  set +f
}
"""
UNTAR = _WALK + 'walk "$1" mkdir && exec tar -x --no-same-owner -f -'
"""Upload (``sh -c UNTAR sh DIR``): extract a tar stream from stdin into the directory
``DIR``, created as needed."""
TAR = (
    _WALK
    + """cd || exit 2
t=$(realpath -m -s -- "$1") || exit 2
if [ "$t" = / ]; then echo "refusing to download /" >&2; exit 4; fi
walk "${t%/*}/"
n=${t##*/}
if [ -L "./$n" ]; then
  if [ "$2" != follow ]; then
    echo "refusing to follow the symbolic link $t (to $(realpath -m -- "./$n"))" >&2
    exit 5
  fi
  t=$(realpath -e -- "./$n") || exit 3
  if [ "$t" = / ]; then echo "refusing to download /" >&2; exit 4; fi
  cd -- "${t%/*}/" || exit 2
  n=${t##*/}
elif [ ! -e "./$n" ]; then
  echo "$t: No such file or directory" >&2
  exit 3
fi
exec tar -c -f - --transform="s,^[^/]*,x,S" -- "$n"
"""
)
"""Download (``sh -c TAR sh PATH follow|nofollow``): archive ``PATH`` with its top-level
name as ``x``. A link at ``PATH`` itself gives its target with ``follow`` and is refused
otherwise; exit 3 when the path is missing."""


def as_user(user: User, argv: Sequence[str], *, runner: Sequence[str] = ()) -> str:
    """The shell line (for root's login shell, run by sshd) that execs ``argv`` as ``user``,
    through ``runner`` if given: a program that takes ``NAME=VALUE`` arguments before the
    command, as env(1) does (``run-command`` does: one exec less per command than env)."""
    if user == "root":
        return "exec " + shlex.join([*runner, *argv])
    if user != "agent":
        raise ValueError(f"user must be 'agent' or 'root', not {user!r}")
    # ${V+"V=$V"}: the variable's assignment when it is set in the session, else nothing.
    passthrough = " ".join(f'${{{name}+"{name}=${name}"}}' for name in AGENT_PASSTHROUGH_ENV)
    via = shlex.join(runner or ["env"])
    return f"exec {shlex.join(AS_AGENT)} {via} {passthrough} {shlex.join(argv)}"


def _cd(cwd: str | None) -> str:
    if cwd is None or cwd == "~":
        return "cd"
    if cwd.startswith("~/"):
        return "cd -- ~/" + shlex.quote(cwd[2:])
    return "cd -- " + shlex.quote(cwd)


def build_command(
    cmd: str,
    *,
    timeout: float,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    user: User = "agent",
) -> tuple[str, bytes | None]:
    """The remote command line that ``ShellSession.run`` sends, and the stdin to feed it
    (or None).

    The script is ``cd``, then ``export`` of ``env`` (after the login profile, so the
    caller's values win), then ``cmd``, run by ``bash -lc`` under ``RUN_COMMAND`` as ``user``.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    if "\0" in cmd or (cwd is not None and "\0" in cwd):
        raise ValueError("a command or directory cannot contain NUL")
    lines = [f"{_cd(cwd)} || exit 1"]
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
        if "\0" in value:
            raise ValueError(f"environment variable {name} contains NUL")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append(cmd)
    script = "\n".join(lines)
    limit = [RUN_COMMAND, f"{timeout:.3f}", f"{KILL_AFTER_S:g}"]
    if len(shlex.quote(script).encode()) <= _ARGV_SCRIPT_LIMIT:
        return _REPORT_PID + as_user(user, ["bash", "-lc", script], runner=limit), None
    via_stdin = 'script=$(cat) && exec </dev/null && eval "$script"'
    command = as_user(user, ["bash", "-lc", via_stdin], runner=limit)
    return _REPORT_PID + command, script.encode()
