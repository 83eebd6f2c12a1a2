"""Reading the machine's apt sources to find the Debian mirror it already uses (pure).

Both formats apt reads are supported: deb822 (``/etc/apt/sources.list.d/*.sources``) and
one-line (``/etc/apt/sources.list``, ``/etc/apt/sources.list.d/*.list``). No host name is
ever written into the project: the mirror comes from the machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "AptSource",
    "DebianMirrors",
    "debian_mirrors",
    "parse_deb822",
    "parse_one_line",
    "read_sources",
]

_SCHEMES = ("http", "https", "ftp", "file")


@dataclass(frozen=True)
class AptSource:
    """One apt source entry (a deb822 stanza, or one line of sources.list)."""

    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None
    enabled: bool = True


def parse_deb822(text: str) -> list[AptSource]:
    """Parse a deb822 ``.sources`` file (stanzas separated by blank lines)."""
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    last: str | None = None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                stanzas.append(fields)
            fields, last = {}, None
            continue
        if raw[0] in " \t":
            if last is not None:  # continuation of a multi-line field
                fields[last] += "\n" + raw.strip()
            continue
        name, sep, value = raw.partition(":")
        if not sep:
            continue  # not a field: ignore, as apt would refuse it anyway
        last = name.strip().lower()
        fields[last] = value.strip()
    if fields:
        stanzas.append(fields)

    out: list[AptSource] = []
    for f in stanzas:
        out.append(
            AptSource(
                types=tuple(f.get("types", "").split()),
                uris=tuple(u.rstrip("/") for u in f.get("uris", "").split()),
                suites=tuple(f.get("suites", "").split()),
                components=tuple(f.get("components", "").split()),
                signed_by=f.get("signed-by") or None,
                enabled=f.get("enabled", "yes").strip().lower() not in ("no", "false", "0"),
            )
        )
    return out


def parse_one_line(text: str) -> list[AptSource]:
    """Parse one-line ``sources.list`` text: ``deb [opt=val ...] URI SUITE [COMPONENT ...]``."""
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        if kind not in ("deb", "deb-src"):
            continue
        rest = rest.strip()
        options: dict[str, str] = {}
        if rest.startswith("["):
            opts, sep, rest = rest[1:].partition("]")
            if not sep:
                continue  # unterminated options: apt would reject the line
            for opt in opts.split():
                key, _, value = opt.partition("=")
                options[key.lower()] = value
        words = rest.split()
        if len(words) < 2:
            continue
        out.append(
            AptSource(
                types=(kind,),
                uris=(words[0].rstrip("/"),),
                suites=(words[1],),
                components=tuple(words[2:]),
                signed_by=options.get("signed-by"),
            )
        )
    return out


def read_sources(root: Path = Path("/")) -> list[AptSource]:
    """Every source entry apt on this machine reads, in apt's order."""
    etc = root / "etc/apt"
    found: list[AptSource] = []
    main_list = etc / "sources.list"
    if main_list.is_file():
        found += parse_one_line(main_list.read_text(errors="replace"))
    parts = etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.name.endswith(".list") and path.is_file():
                found += parse_one_line(path.read_text(errors="replace"))
            elif path.name.endswith(".sources") and path.is_file():
                found += parse_deb822(path.read_text(errors="replace"))
    return [_resolve_mirror_file(s, root) for s in found]


def _resolve_mirror_file(src: AptSource, root: Path) -> AptSource:
    """``mirror+file:///path`` (Debian cloud images) -> the first mirror listed in that file."""
    uris: list[str] = []
    for uri in src.uris:
        if uri.startswith("mirror+file:"):
            path = root / urlparse(uri.removeprefix("mirror+")).path.lstrip("/")
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            first = next((w.split()[0] for w in lines if w.strip() and w[0] != "#"), None)
            if first:
                uris.append(first.rstrip("/"))
        else:
            uris.append(uri)
    return AptSource(src.types, tuple(uris), src.suites, src.components, src.signed_by, src.enabled)


@dataclass(frozen=True)
class DebianMirrors:
    """Where the Debian archive, its updates and its security updates come from."""

    main: str
    updates: str | None = None
    security: str | None = None

    @property
    def needs_ca_certificates(self) -> bool:
        return any(u and u.startswith("https:") for u in (self.main, self.updates, self.security))

    def sources_list(self, suite: str) -> str:
        """A one-line ``sources.list`` for a root file system of ``suite``."""
        lines = [f"deb {self.main} {suite} main"]
        if self.updates:
            lines.append(f"deb {self.updates} {suite}-updates main")
        if self.security:
            lines.append(f"deb {self.security} {suite}-security main")
        return "\n".join(lines) + "\n"


def _debian_score(src: AptSource, uri: str) -> int:
    """Higher for what looks like Debian's own archive rather than a third-party repo."""
    path = urlparse(uri).path.rstrip("/")
    score = 2 if path.endswith(("/debian", "/debian-security")) else 0
    if src.signed_by is None or "debian-archive-keyring" in src.signed_by:
        score += 1
    return score


def _candidates(
    sources: list[AptSource],
    suite: str | None,
    path_filter: Callable[[str], bool] | None = None,
) -> list[tuple[int, int, str]]:
    """(score, -order, uri) of enabled binary entries serving ``suite`` (None: any) main,
    best first."""
    out: list[tuple[int, int, str]] = []
    order = 0
    for src in sources:
        if not src.enabled or "deb" not in src.types or "main" not in src.components:
            continue
        if suite is not None and suite not in src.suites:
            continue
        for uri in src.uris:
            order += 1
            parsed = urlparse(uri)
            if parsed.scheme not in _SCHEMES:
                continue
            if path_filter is not None and not path_filter(parsed.path.rstrip("/")):
                continue
            out.append((_debian_score(src, uri), -order, uri))
    return sorted(out, reverse=True)


def debian_mirrors(sources: list[AptSource], suite: str = "bookworm") -> DebianMirrors:
    """Pick the Debian main archive (and its -updates/-security) for ``suite``.

    Falls back to any Debian archive the machine uses for another release (the mirror
    serves every release). Raises ``LookupError`` when the sources name none.
    """
    main = _candidates(sources, suite)
    updates = _candidates(sources, f"{suite}-updates")
    security = _candidates(sources, f"{suite}-security")
    if not main:
        # A machine on another Debian release: its archive serves every release.
        main = _candidates(sources, None, lambda uri: uri.endswith("/debian"))
        if not main:
            raise LookupError(f"no Debian archive for {suite} (main) in apt's sources")
        updates = [(0, 0, main[0][2])]  # every Debian mirror carries <suite>-updates
        security = _candidates(sources, None, lambda uri: uri.endswith("/debian-security"))
    return DebianMirrors(
        main=main[0][2],
        updates=updates[0][2] if updates else None,
        security=security[0][2] if security else None,
    )
