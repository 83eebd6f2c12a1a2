"""``orchestrator gc``: remove records older than an age, and say how much space it freed.

It opens the records in ``ORCHESTRATOR_DATA_DIR`` directly (SQLite lets it share them with a
running recorder, which collects the same way every hour).
"""

from __future__ import annotations

import re
import time

import click

__all__ = ["parse_age", "register"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_age(text: str) -> float:
    """Seconds in an age such as ``7d``, ``12h``, ``30m`` or ``90s``."""
    match = _AGE.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r}: want a number and a unit, e.g. 7d, 12h, 30m, 90s")
    return float(match.group(1)) * _UNITS[match.group(2)]


def register(main: click.Group) -> None:
    """Add ``gc`` to the ``orchestrator`` command."""

    @main.command()
    @click.option(
        "--older-than",
        "age",
        metavar="AGE",
        default=None,
        help="Remove what ended longer ago than this (7d, 12h, 30m, 90s) "
        "[default: ORCHESTRATOR_RECORDS_RETENTION_DAYS, 30 days].",
    )
    @click.option("--dry-run", is_flag=True, help="Remove nothing; say what would go.")
    @click.option(
        "--vacuum",
        is_flag=True,
        help="Also shrink the database file (rewrites it; writers wait meanwhile).",
    )
    def gc(age: str | None, dry_run: bool, vacuum: bool) -> None:
        """Remove finished runs (a task and its subtasks), fired agents, their events,
        screenshots and files that ended longer ago than AGE; never a pinned run, an open
        task or anything of a live agent. Prints the rows removed per kind and the bytes."""
        from .config import settings
        from .errors import ConfigError
        from .records import DB_NAME, SQLiteStore

        if age is not None:
            older_than_s = parse_age(age)
        else:
            days = settings().records_retention_days
            if not days:
                raise ConfigError(
                    "ORCHESTRATOR_RECORDS_RETENTION_DAYS is 0 (keep for ever): "
                    "give --older-than to remove anything"
                )
            older_than_s = days * 86_400.0
        data_dir = settings().data_dir
        if not (data_dir / DB_NAME).is_file():
            click.echo(f"no records in {data_dir}: nothing to do")
            return
        with SQLiteStore(data_dir) as store:
            report = store.collect_garbage(older_than_s, dry_run=dry_run, vacuum=vacuum)
        cutoff = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(report.cutoff))
        click.echo(
            f"{'would remove' if dry_run else 'removed'} from {data_dir}"
            f" what ended before {cutoff}:"
        )
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(report.events.items()))
        rows = [
            ("tasks", str(report.tasks)),
            ("agents", str(report.agents)),
            ("events", f"{sum(report.events.values())}" + (f" ({by_kind})" if by_kind else "")),
            ("blobs", f"{report.blobs} ({report.blob_bytes} bytes)"),
            ("database", f"{report.db_bytes} bytes of pages freed"),
        ]
        if vacuum:
            rows.append(("vacuum", f"file {report.vacuumed_bytes} bytes smaller"))
        rows.append(("reclaimed", f"{report.bytes} bytes"))
        for name, value in rows:
            click.echo(f"  {name:<10}{value}")
