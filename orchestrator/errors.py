"""The one exception hierarchy of the runtime.

Infrastructure failures are exceptions; tool failures (a click outside the screen, an
unknown key name, a command that exits non-zero or times out) are *data*: an
``ActionResult`` or ``CommandResult`` the model can read.

    OrchestratorError
    ├── ConfigError                  bad configuration or input to the runtime itself
    ├── DockerError                  the Docker engine failed or refused
    │   ├── DockerUnavailableError   no engine answers (the message says how to start one)
    │   ├── ImageNotFoundError (also ConfigError)  the image is missing (says how to build it)
    │   ├── DockerRefusedError (also ConfigError)  the engine refused the request as invalid
    │   ├── ImageBuildError          building the base or desktop image failed
    │   └── desktop._network.EgressFirewallError  the egress network or firewall failed
    ├── DesktopError                 a desktop container misbehaved
    │   ├── DesktopNotReadyError     it did not become ready before its deadline
    │   ├── DesktopGoneError         its container stopped or was removed under us
    │   ├── DisplayError             the X display could not be reached
    │   ├── ShellError               the SSH connection failed (not a failing command)
    │   └── UntrustedPathError       a desktop's directory held a link or look-alike: refused
    ├── BrainError                   a model gave no usable answer (after retries) or refused
    ├── RecordError                  the record store failed to read or write
    ├── AgentError                   an agent cannot do what was asked (unknown, gone, busy)
    │   ├── NotFoundError            no such agent or task (for this tenant)
    │   └── AgentGoneError           the agent's actor died while it was asked
    ├── UnavailableError             the cluster did not answer (retrying later may help)
    ├── CapacityError                no node has room for another agent's desktop (for now)
    ├── QuotaExceededError           a tenant is at one of its quotas (agents, desktops, tasks)
    ├── LocalClusterError            the local cluster (``orchestrator up``) failed
    └── sdk.ApiError                 the HTTP API answered an error (the SDK's; .status, .code)
        ├── sdk.AuthError            401: no or an invalid API key
        ├── sdk.ConflictError (also AgentError)  409: the agent cannot do this now
        ├── sdk.ForbiddenError (also PermissionError)  403: a desktop refused a file
        ├── sdk.InvalidRequestError (also ConfigError)  413, 422: the request is invalid
        ├── sdk.NotFoundError (also NotFoundError)  404: no such agent or task
        ├── sdk.QuotaExceededError (also QuotaExceededError)  429: the tenant is at a quota
        └── sdk.UnavailableError     429, 503 or no answer, still after the retries

A class with more than one base is drawn under its first and names the others ("also"); a
class defined outside this module is named by where it is exported (``orchestrator.sdk``) or
defined. ``tests/unit/test_errors_tree.py`` draws the tree from the classes and compares.
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AgentGoneError",
    "BrainError",
    "CapacityError",
    "ConfigError",
    "DesktopError",
    "DesktopGoneError",
    "DesktopNotReadyError",
    "DisplayError",
    "DockerError",
    "DockerRefusedError",
    "DockerUnavailableError",
    "ImageBuildError",
    "ImageNotFoundError",
    "LocalClusterError",
    "NotFoundError",
    "OrchestratorError",
    "QuotaExceededError",
    "RecordError",
    "ShellError",
    "UnavailableError",
    "UntrustedPathError",
]


class OrchestratorError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ConfigError(OrchestratorError):
    """Configuration or input to the runtime is invalid."""


class DockerError(OrchestratorError):
    """The Docker engine failed or refused a request."""


class DockerUnavailableError(DockerError):
    """No Docker engine answers on the configured socket."""


class ImageNotFoundError(DockerError, ConfigError):
    """The desktop image has not been built on this machine (or a spec names one that is not
    here): retrying does not help."""


class DockerRefusedError(DockerError, ConfigError):
    """The Docker engine refused a request as invalid (HTTP 400: e.g. more CPUs than the host
    has, a malformed image name): the input must change, retrying does not help."""


class ImageBuildError(DockerError):
    """Building the base image or the desktop image failed."""


class DesktopError(OrchestratorError):
    """A desktop container failed."""


class DesktopNotReadyError(DesktopError):
    """A desktop did not report ready before its deadline."""


class DesktopGoneError(DesktopError):
    """The desktop's container stopped or was removed."""


class DisplayError(DesktopError):
    """The desktop's X display cannot be reached."""


class ShellError(DesktopError):
    """The desktop's SSH connection failed (a failing command is a result, not this)."""


class UntrustedPathError(DesktopError):
    """A file or socket in a desktop's shared directories was not what the host expects (a
    symbolic link, a FIFO, a socket served by a process outside the desktop's container):
    the host refused to read, write or connect through it."""


class BrainError(OrchestratorError):
    """A model gave no usable answer after retries, or refused; the task fails with this."""


class RecordError(OrchestratorError):
    """The record store failed to read or write."""


class AgentError(OrchestratorError):
    """An agent cannot do what was asked (it is gone, busy, or the request is invalid)."""


class NotFoundError(AgentError):
    """No such agent or task (for this tenant)."""


class AgentGoneError(AgentError):
    """The agent's actor died while it was asked (its record says what became of it)."""


class UnavailableError(OrchestratorError):
    """The cluster did not answer: an actor is restarting or unreachable, or the control
    plane timed out. Retrying later may help."""


class CapacityError(OrchestratorError):
    """No node of the cluster had a free ``desktop`` unit for a new agent in time: fire
    idle agents or add nodes, then try again."""


class QuotaExceededError(OrchestratorError):
    """A tenant is at one of its quotas (live agents, desktops, running tasks): the message
    names the limit and the current count. Waiting does not help by itself: the tenant fires
    an agent or lets a task end (or the operator raises the quota)."""


class LocalClusterError(OrchestratorError):
    """The local cluster (``orchestrator up``, ``orchestrator.local``) failed to start or to
    stop; the message ends with the tail of its log."""
