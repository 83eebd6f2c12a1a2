"""The desktop image's tag and builder helpers: nothing here starts Docker or debootstrap."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import orchestrator.image as image
from orchestrator import cli
from orchestrator.config import settings
from orchestrator.errors import ImageBuildError
from orchestrator.image._apt import (
    AptSource,
    DebianMirrors,
    debian_mirrors,
    parse_deb822,
    parse_one_line,
    read_sources,
)
from orchestrator.image._base import _phases
from orchestrator.image._build import BuildLog
from orchestrator.image._tag import source_digest, tag_for

# -- the tag ------------------------------------------------------------------------------


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    d = tmp_path / "desktop_image"
    (d / "openbox").mkdir(parents=True)
    (d / "Dockerfile").write_text("ARG BASE_IMAGE=debian:bookworm-slim\nFROM ${BASE_IMAGE}\n")
    (d / "desktop-init").write_text("#!/usr/bin/python3\nprint('hi')\n")
    (d / "openbox" / "menu.xml").write_text("<openbox_menu/>\n")
    return d


@pytest.fixture
def image_dir(sources: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point settings().desktop_image_dir at the temporary sources."""
    monkeypatch.setenv("ORCHESTRATOR_DESKTOP_IMAGE_DIR", str(sources))
    monkeypatch.delenv("ORCHESTRATOR_DESKTOP_IMAGE", raising=False)
    settings.cache_clear()
    yield sources
    settings.cache_clear()


def test_the_tag_names_the_repository_and_12_hex_of_the_sources(image_dir: Path) -> None:
    tag = image.image_tag()
    assert re.fullmatch(r"orchestrator-desktop:[0-9a-f]{12}", tag)
    assert tag == tag_for(image_dir) == image.image_tag(image_dir)
    assert tag.endswith(source_digest(image_dir)[:12])


def test_the_tag_is_stable_when_nothing_changes(image_dir: Path) -> None:
    before = image.image_tag()
    (image_dir / "Dockerfile").touch()  # a new mtime is not a change
    (image_dir / "__pycache__").mkdir()
    (image_dir / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert image.image_tag() == before


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "desktop-init").write_text("#!/usr/bin/python3\nprint('bye')\n"),
        lambda d: (d / "openbox" / "menu.xml").write_text("<openbox_menu></openbox_menu>\n"),
        lambda d: (d / "tint2rc").write_text("panel_items = T\n"),
        lambda d: (d / "openbox" / "menu.xml").rename(d / "openbox" / "menu2.xml"),
        lambda d: (d / "desktop-init").unlink(),
    ],
    ids=["edit", "edit-nested", "add", "rename", "remove"],
)
def test_the_tag_changes_with_any_file(image_dir: Path, change: object) -> None:
    before = image.image_tag()
    change(image_dir)  # type: ignore[operator]
    assert image.image_tag() != before


def test_moving_bytes_between_name_and_content_changes_the_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "ab").write_text("c")
    (b / "a").write_text("bc")
    assert source_digest(a) != source_digest(b)


def test_default_image_is_the_setting_or_the_tag(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert image.default_image() == image.image_tag()
    monkeypatch.setenv("ORCHESTRATOR_DESKTOP_IMAGE", "my/desktop:1")
    settings.cache_clear()
    assert image.default_image() == "my/desktop:1"


def test_missing_sources_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tag_for(tmp_path / "nope")


def test_the_checkout_has_its_image_sources() -> None:
    d = Path(__file__).resolve().parents[2] / "desktop_image"
    assert (d / "Dockerfile").is_file() and (d / "desktop-init").is_file()
    assert "ARG BASE_IMAGE=" in (d / "Dockerfile").read_text()


# -- apt sources --------------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: https://vendor.example/apt
Suites: bookworm
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF...
 -----END PGP PUBLIC KEY BLOCK-----

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# a comment
deb http://mirror.example/debian bookworm main contrib non-free-firmware
deb [arch=amd64 signed-by=/usr/share/keyrings/vendor.gpg] https://vendor.example/apt bookworm main
deb-src http://mirror.example/debian bookworm main
#deb http://commented.example/debian bookworm main
deb http://mirror.example/debian bookworm-updates main   # updates
deb http://security.example/debian-security bookworm-security main
deb https://packages.cloud.example/apt cloud-sdk-bookworm main
"""


def test_deb822_parsing() -> None:
    entries = parse_deb822(DEB822)
    assert len(entries) == 4
    first = entries[0]
    assert first.types == ("deb",)
    assert first.uris == ("http://mirror.example/debian",)
    assert first.suites == ("bookworm", "bookworm-updates")
    assert first.components == ("main",)
    assert first.enabled
    assert entries[1].types == ("deb", "deb-src")
    assert entries[2].signed_by is not None and "BEGIN PGP" in entries[2].signed_by
    assert not entries[3].enabled


def test_one_line_parsing() -> None:
    entries = parse_one_line(ONE_LINE)
    assert [e.uris[0] for e in entries] == [
        "http://mirror.example/debian",
        "https://vendor.example/apt",
        "http://mirror.example/debian",
        "http://mirror.example/debian",
        "http://security.example/debian-security",
        "https://packages.cloud.example/apt",
    ]
    assert entries[0].components == ("main", "contrib", "non-free-firmware")
    assert entries[1].signed_by == "/usr/share/keyrings/vendor.gpg"
    assert entries[2].types == ("deb-src",)
    assert entries[3].suites == ("bookworm-updates",) and entries[3].components == ("main",)


@pytest.mark.parametrize("parse, text", [(parse_deb822, DEB822), (parse_one_line, ONE_LINE)])
def test_the_debian_archive_wins_over_third_party_and_disabled_entries(
    parse: object, text: str
) -> None:
    m = debian_mirrors(parse(text))  # type: ignore[operator]
    assert m.main == "http://mirror.example/debian"
    assert m.updates == "http://mirror.example/debian"
    assert m.security is not None and m.security.endswith("/debian-security")
    assert not m.needs_ca_certificates


def test_the_rootfs_sources_list() -> None:
    m = DebianMirrors(main="http://m/debian", updates="http://m/debian", security="http://s/ds")
    assert m.sources_list("bookworm") == (
        "deb http://m/debian bookworm main\n"
        "deb http://m/debian bookworm-updates main\n"
        "deb http://s/ds bookworm-security main\n"
    )
    assert DebianMirrors(main="http://m/debian").sources_list("bookworm") == (
        "deb http://m/debian bookworm main\n"
    )
    assert DebianMirrors(main="https://m/debian").needs_ca_certificates


def test_a_machine_on_another_release_still_gives_its_debian_mirror() -> None:
    trixie = parse_one_line(
        "deb http://m.example/debian trixie main\n"
        "deb http://m.example/debian-security trixie-security main\n"
    )
    m = debian_mirrors(trixie, "bookworm")
    assert m.main == "http://m.example/debian"
    assert m.updates == "http://m.example/debian"
    assert m.security == "http://m.example/debian-security"


def test_no_debian_mirror_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        debian_mirrors(parse_one_line("deb https://vendor.example/apt stable main\n"))
    with pytest.raises(LookupError):
        debian_mirrors([])
    disabled = AptSource(("deb",), ("http://m/debian",), ("bookworm",), ("main",), enabled=False)
    with pytest.raises(LookupError):
        debian_mirrors([disabled])


def test_read_sources_reads_both_formats_and_mirror_files(tmp_path: Path) -> None:
    apt = tmp_path / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "mirrors").mkdir()
    (apt / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: mirror+file:///etc/apt/mirrors/debian.list\n"
        "Suites: bookworm-updates\nComponents: main\n"
    )
    (apt / "mirrors/debian.list").write_text("# cloud mirror\nhttps://cloud.example/debian\n")
    (apt / "sources.list.d/old.list.disabled").write_text("deb http://x/debian bookworm main\n")
    entries = read_sources(tmp_path)
    assert [e.uris for e in entries] == [
        ("http://one.example/debian",),
        ("https://cloud.example/debian",),
    ]
    m = debian_mirrors(entries)
    assert (m.main, m.updates, m.security) == (
        "http://one.example/debian",
        "https://cloud.example/debian",
        None,
    )


# -- progress -----------------------------------------------------------------------------


def test_debootstrap_progress_shows_phases_not_packages() -> None:
    out = [
        "I: Retrieving InRelease",
        "I: Retrieving adduser 3.134",
        "I: Validating adduser 3.134",
        "I: Retrieving libc6 2.36-9+deb12u14",
        "I: Validating libc6 2.36-9+deb12u14",
        "I: Extracting adduser...",
        "I: Extracting libc6...",
        "I: Installing core packages...",
        "I: Unpacking required packages...",
        "I: Unpacking libc6:amd64...",
        "I: Unpacking zlib1g:amd64...",
        "I: Configuring libc6:amd64...",
        "W: something odd",
        "I: Base system installed successfully.",
    ]
    tail: deque[str] = deque(maxlen=30)
    shown = list(_phases(out, tail))
    assert shown == [
        "Retrieving InRelease",
        "Retrieving packages...",
        "Validating packages...",
        "Extracting packages...",
        "Installing core packages...",
        "Unpacking required packages...",
        "Unpacking packages...",
        "Configuring packages...",
        "W: something odd",
        "Base system installed successfully.",
    ]
    assert list(tail) == out


def test_build_log_shows_steps_and_summarises_apt() -> None:
    lines: list[str] = []
    now = [0.0]
    log = BuildLog(lines.append, interval_s=5.0, clock=lambda: now[0])
    log.feed("Step 1/3 : FROM base\n ---> abc\nStep 2/3 : RUN apt-get install\n")
    log.feed(" ---> Running in 123\n0 upgraded, 3 newly installed, 0 to remove.\nUnpack")
    log.feed("ing a (1) ...\nUnpacking b (1) ...\n")
    now[0] = 6.0
    log.feed("\x1b[91mSetting up a (1) ...\n\x1b[0mUnpacking c (1) ...\nSetting up b (1) ...\n")
    log.feed("Setting up c (1) ...\nStep 3/3 : COPY x /x\n ---> Using cache\n")
    log.feed("Successfully tagged orchestrator-desktop:0123456789ab\n")
    log.flush()
    assert lines == [
        "step 1/3: FROM base",
        "step 2/3: RUN apt-get install",
        "  apt: installing 3 packages",
        "  apt: unpacked 2/3, set up 1/3",
        "  apt: unpacked 3/3, set up 3/3",
        "step 3/3: COPY x /x",
        "  (cached)",
        "Successfully tagged orchestrator-desktop:0123456789ab",
    ]
    assert log.step == "3/3"


def test_build_log_keeps_the_failing_steps_tail() -> None:
    log = BuildLog(lambda _: None, tail_lines=3)
    log.feed("Step 4/9 : RUN false\n")
    log.feed("".join(f"line {i}\n" for i in range(10)))
    assert log.step == "4/9"
    assert list(log.tail) == ["line 7", "line 8", "line 9"]


# -- the command --------------------------------------------------------------------------


def test_cli_image_tag(image_dir: Path) -> None:
    result = CliRunner().invoke(cli.main, ["image", "tag"])
    assert result.exit_code == 0
    assert result.output.strip() == image.image_tag()


def test_cli_errors_are_one_clean_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**kwargs: object) -> str:
        raise ImageBuildError("building x failed at step 4/9: boom\n--- last output ---\nE: no")

    monkeypatch.setattr(image, "build_image", fail)
    result = CliRunner().invoke(cli.main, ["image", "build"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.splitlines()[0] == "error: building x failed at step 4/9: boom"
    assert isinstance(result.exception, SystemExit)
