"""The most one desktop may ask of its node (S4/S5): maxima tied to the node and the
operator's settings, and the image allow-list."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from orchestrator.desktop import DesktopLimits, DesktopSpec, check_desktop
from orchestrator.errors import ConfigError

NODE_MIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
CORES = os.cpu_count() or 1


@pytest.fixture
def defaults(operator_env: Callable[..., None]) -> Callable[..., None]:
    """No operator settings about desktops: every limit is its default."""
    operator_env(
        ORCHESTRATOR_DESKTOP_IMAGES=None,
        ORCHESTRATOR_DESKTOP_IMAGE=None,
        ORCHESTRATOR_DESKTOP_MAX_CPUS=None,
        ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB=None,
        ORCHESTRATOR_DESKTOP_MAX_SHM_MB=None,
        ORCHESTRATOR_DESKTOP_MAX_PIDS=None,
    )
    return operator_env


def refused(spec: DesktopSpec) -> str:
    with pytest.raises(ConfigError) as err:
        check_desktop(spec)
    return str(err.value)


def test_the_defaults_are_the_node_and_the_images_the_project_builds(
    defaults: Callable[..., None],
) -> None:
    limits = DesktopLimits.of_this_node()
    assert limits == DesktopLimits(
        cpus=CORES, memory_mb=NODE_MIB, shm_mb=None, pids=4096, images=("orchestrator-desktop:*",)
    )
    check_desktop(DesktopSpec())  # the default desktop fits any node the project runs on
    check_desktop(
        DesktopSpec(cpus=CORES, memory_mb=NODE_MIB, shm_mb=NODE_MIB, pids_limit=4096)
    )  # the maxima themselves are allowed


def test_a_spec_over_a_maximum_is_refused_naming_the_field_and_the_maximum(
    defaults: Callable[..., None],
) -> None:
    """The probe's desktop: 1 TiB of memory, 64 GiB of /dev/shm, a million processes."""
    msg = refused(DesktopSpec(memory_mb=1_048_576))
    assert msg.startswith(f"desktop.memory_mb: 1048576 is over the maximum of {NODE_MIB} MiB")
    assert "ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB" in msg
    msg = refused(DesktopSpec(pids_limit=1_000_000))
    assert msg.startswith("desktop.pids_limit: 1000000 is over the maximum of 4096")
    msg = refused(DesktopSpec(memory_mb=2048, shm_mb=65_536))
    assert msg.startswith("desktop.shm_mb: 65536 is over the maximum of 2048 MiB")
    assert "memory_mb" in msg.split("MiB", 1)[1]
    msg = refused(DesktopSpec(cpus=CORES + 0.5))
    assert msg.startswith(f"desktop.cpus: {CORES + 0.5:g} is over the maximum of {CORES} cores")


def test_the_operator_sets_the_maxima(defaults: Callable[..., None]) -> None:
    defaults(
        ORCHESTRATOR_DESKTOP_MAX_CPUS="0.5",
        ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB="1024",
        ORCHESTRATOR_DESKTOP_MAX_SHM_MB="128",
        ORCHESTRATOR_DESKTOP_MAX_PIDS="256",
    )
    assert refused(DesktopSpec(cpus=1)).startswith("desktop.cpus: 1 is over the maximum of 0.5")
    assert refused(DesktopSpec(cpus=0.5, memory_mb=2048)).startswith(
        "desktop.memory_mb: 2048 is over the maximum of 1024 MiB"
    )
    small = {"cpus": 0.5, "memory_mb": 1024, "pids_limit": 256}
    assert refused(DesktopSpec(**small, shm_mb=256)).startswith(
        "desktop.shm_mb: 256 is over the maximum of 128 MiB (ORCHESTRATOR_DESKTOP_MAX_SHM_MB)"
    )
    assert refused(DesktopSpec(**{**small, "pids_limit": 257}, shm_mb=64)).startswith(
        "desktop.pids_limit: 257 is over the maximum of 256"
    )
    check_desktop(DesktopSpec(**small, shm_mb=128))
    # An operator may also allow more than the node has (Docker then refuses it itself).
    defaults(ORCHESTRATOR_DESKTOP_MAX_CPUS=None, ORCHESTRATOR_DESKTOP_MAX_PIDS=None)
    defaults(
        ORCHESTRATOR_DESKTOP_MAX_SHM_MB=None, ORCHESTRATOR_DESKTOP_MAX_MEMORY_MB=str(NODE_MIB * 4)
    )
    check_desktop(DesktopSpec(memory_mb=NODE_MIB * 2))


def test_only_allowed_images_run(defaults: Callable[..., None]) -> None:
    check_desktop(DesktopSpec(image="orchestrator-desktop:0123456789ab"))
    check_desktop(DesktopSpec(image=None))  # the operator's default image
    for image in ("debian:bookworm-slim", "orchestrator-base:bookworm", "alpine", "orchestrator"):
        msg = refused(DesktopSpec(image=image))
        assert msg.startswith(f"desktop.image: {image!r} is not an image this cluster allows")
        assert "orchestrator-desktop:*" in msg and "ORCHESTRATOR_DESKTOP_IMAGES" in msg
    # The operator's own default image is allowed with the project's.
    defaults(ORCHESTRATOR_DESKTOP_IMAGE="registry.example/desk:7")
    check_desktop(DesktopSpec(image="registry.example/desk:7"))
    assert "registry.example/desk:8" in refused(DesktopSpec(image="registry.example/desk:8"))
    # An explicit list replaces the defaults; `*` at the end of an entry is a prefix.
    defaults(ORCHESTRATOR_DESKTOP_IMAGES=" mirror.example/desk:* , plain:1")
    check_desktop(DesktopSpec(image="mirror.example/desk:anything"))
    check_desktop(DesktopSpec(image="plain:1"))
    for image in ("plain:12", "orchestrator-desktop:0123456789ab", "mirror.example/desk"):
        refused(DesktopSpec(image=image))
