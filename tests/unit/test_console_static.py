"""The console's static files at /console: index and SPA routes, hashed assets, media types,
the security headers, no way out of the build folder, and a clear 503 without a build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from orchestrator.records import SQLiteStore
from serve_app import _console
from tests.fakes.runtime_app import api

INDEX = '<!doctype html><html><script type="module" src="/console/assets/index-abc123.js">'


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build folder as ``vite build`` leaves it, with a secret next to it."""
    root = tmp_path / "console" / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    (root / "assets" / "index-abc123.css").write_text("body{}")
    (root / "favicon.svg").write_text("<svg/>")
    (root / ".hidden").write_text("no")
    (tmp_path / "console" / "secret.txt").write_text("top secret")
    monkeypatch.setattr(_console, "CONSOLE_DIST", root)
    return root


@pytest.fixture
def client(store: SQLiteStore) -> Iterator[TestClient]:
    with api(store) as (c, _):
        yield c


def _csp(r: object) -> dict[str, str]:
    header = r.headers["content-security-policy"]  # type: ignore[attr-defined]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in header.split("; ")}


@pytest.mark.parametrize("path", ["/console", "/console/", "/console/tasks/task-1"])
def test_the_page_and_its_routes_answer_the_index_never_cached(
    client: TestClient, dist: Path, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.text == INDEX
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    csp = _csp(r)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["img-src"] == "'self' data: blob:"
    assert csp["connect-src"] == "'self' ws://testserver wss://testserver"


def test_an_embed_page_may_be_framed_by_any_site(client: TestClient, dist: Path) -> None:
    r = client.get("/console/embed/agent-3f9a1c0b2e?ticket=abc")
    assert r.status_code == 200 and r.text == INDEX
    assert _csp(r)["frame-ancestors"] == "*"
    assert "x-frame-options" not in r.headers
    assert r.headers["cache-control"] == "no-store"


def test_hashed_assets_are_immutable_with_their_media_types(client: TestClient, dist: Path) -> None:
    js = client.get("/console/assets/index-abc123.js")
    assert js.status_code == 200 and js.text == "console.log(1)"
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert js.headers["x-content-type-options"] == "nosniff"
    css = client.get("/console/assets/index-abc123.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    svg = client.get("/console/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert "immutable" not in svg.headers["cache-control"]
    assert client.head("/console/assets/index-abc123.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/nope-123.js",
        "/console/nope.js",
        "/console/assets/",
        "/console/.hidden",
        "/console/..%2fsecret.txt",
        "/console/assets/..%2f..%2fsecret.txt",
        "/console/%2e%2e/secret.txt",
        "/console/assets%5c..%5c..%5csecret.txt",
    ],
)
def test_missing_files_and_ways_out_of_the_build_are_404(
    client: TestClient, dist: Path, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code, r.text[:100])
    assert "top secret" not in r.text
    assert r.json()["error"]["code"] == "not_found"


def test_a_dotted_dot_path_never_reads_outside(client: TestClient, dist: Path) -> None:
    """Whatever the client's URL normalisation, nothing outside the build is served."""
    for path in ("/console/../console/secret.txt", "/console/assets/../../secret.txt"):
        r = client.get(path)
        assert "top secret" not in r.text


def test_without_a_build_the_console_says_how_to_make_one(
    client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_console, "CONSOLE_DIST", tmp_path / "nothing")
    for path in ("/console", "/console/", "/console/assets/index-abc123.js"):
        r = client.get(path)
        assert r.status_code == 503, path
        assert r.json()["error"] == {"code": "unavailable", "message": _console.NOT_BUILT}
    page = client.get("/console", headers={"Accept": "text/html"})
    assert page.status_code == 503
    assert "run scripts/setup.sh to build the console" in page.text
    assert page.headers["content-type"].startswith("text/html")


def test_the_console_needs_no_key_and_is_not_in_the_api_document(
    client: TestClient, dist: Path
) -> None:
    assert client.get("/console").status_code == 200  # no Authorization header
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith("/console") for p in paths)


def test_a_host_header_unfit_for_the_policy_is_left_out() -> None:
    assert "ws:" not in _console.console_csp("evil.com; script-src *", embed=False)
    assert "ws://[::1]:8000" in _console.console_csp("[::1]:8000", embed=False)
    assert _console.console_csp(None, embed=True).endswith("frame-ancestors *")


def test_the_console_pins_its_npm_dependencies_and_locks_them() -> None:
    """Exact versions in package.json (a fresh machine builds what was tested), the lock
    agrees with it, and only these runtime dependencies ship in the page."""
    import json
    import re

    app = Path(_console.__file__).parent / "console"
    package = json.loads((app / "package.json").read_text())
    lock = json.loads((app / "package-lock.json").read_text())
    exact = re.compile(r"^\d+\.\d+\.\d+$")
    for group in ("dependencies", "devDependencies"):
        for name, version in package[group].items():
            assert exact.match(version), f"{name} {version} is not pinned"
        assert lock["packages"][""][group] == package[group], group
    assert set(package["dependencies"]) == {"react", "react-dom", "@novnc/novnc"}
