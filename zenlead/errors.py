"""Exceptions raised by zen-lead, as one tree so callers can catch at the right depth.

::

    ZenleadError
    ├── ConfigError            a setting or annotation is invalid; the message names the key
    ├── NotLeadingError        a write was refused: this replica lost the Lease
    └── KubeError              the Kubernetes API refused or failed a call (zenlead.kube)
        ├── NotFoundError      404
        ├── ConflictError      409 with a stale resourceVersion or failed precondition
        │   └── AlreadyExistsError   409 AlreadyExists
        ├── GoneError          410: a watch's resourceVersion is too old; relist
        ├── ForbiddenError     403: RBAC denies the call
        ├── InvalidError       422: the API server's validation rejected the object
        ├── ThrottledError     429
        ├── ServerError        5xx
        └── UnavailableError   no HTTP answer (connection refused, timeout, TLS)
"""

from __future__ import annotations

__all__ = (
    "AlreadyExistsError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeError",
    "NotFoundError",
    "NotLeadingError",
    "ServerError",
    "ThrottledError",
    "UnavailableError",
    "ZenleadError",
)


class ZenleadError(Exception):
    """Base of every exception zen-lead raises on purpose."""


class ConfigError(ZenleadError):
    """A setting, flag or annotation is invalid; the message names the key and the reason."""


class NotLeadingError(ZenleadError):
    """A write was refused because this replica no longer holds the Lease."""


class KubeError(ZenleadError):
    """A Kubernetes API call failed; `status` is the HTTP status, 0 when none was received."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        """Record `message` and the HTTP `status` of the failed call."""
        super().__init__(message)
        self.status = status


class NotFoundError(KubeError):
    """The object does not exist (404)."""


class ConflictError(KubeError):
    """The write raced another writer or a precondition failed (409)."""


class AlreadyExistsError(ConflictError):
    """Create found an object of that name (409 AlreadyExists)."""


class GoneError(KubeError):
    """The requested resourceVersion is no longer available (410); list again."""


class ForbiddenError(KubeError):
    """RBAC denied the call (403)."""


class InvalidError(KubeError):
    """The API server's validation rejected the object (422)."""


class ThrottledError(KubeError):
    """The API server asked us to slow down (429)."""


class ServerError(KubeError):
    """The API server failed (5xx)."""


class UnavailableError(KubeError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""
