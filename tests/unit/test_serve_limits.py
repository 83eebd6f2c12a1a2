"""The API's overload limits, as configured (no Ray started): Serve's own cap sits above the
app's, so that the app's 429s (one error shape) are what a client meets, and open event
streams cannot fill a replica; only the exact health and stream paths skip the request cap."""

from __future__ import annotations

import pytest

from serve_app._app import ApiDeployment
from serve_app._limit import DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_STREAMS, counted


def test_serves_cap_is_above_the_apps_requests_and_streams_together() -> None:
    config = ApiDeployment._deployment_config  # type: ignore[attr-defined]
    assert config.max_ongoing_requests > DEFAULT_MAX_CONCURRENT + DEFAULT_MAX_STREAMS
    assert config.backpressure_config.status_code == 429
    assert config.backpressure_config.retry_after_s == 1


@pytest.mark.parametrize(
    ("path", "exempt"),
    [
        ("/healthz", True),
        ("/v1/tasks/task-1/events/stream", True),
        ("/v1/tasks/healthz", False),
        ("/v1/agents/x/healthz", False),
        ("/v1/tasks/task-1/events/stream/x", False),
        ("/v1/agents/a/files/events/stream", False),
    ],
)
def test_only_the_exact_paths_skip_the_request_cap(path: str, exempt: bool) -> None:
    assert counted(path) is not exempt
