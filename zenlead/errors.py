"""Exceptions raised by zen-lead, as one tree so callers can catch at the right depth.

::

    ZenleadError
    ├── ConfigError            a setting or annotation is invalid; the message names the key
    ├── NotLeadingError        a write was refused: this replica does not hold the Lease now
    ├── StaleCacheError        the cache is older than our own last write; look again shortly
    ├── CircuitOpenError       an ordinary call was refused: the API server keeps failing
    └── KubeError              the Kubernetes API refused or failed a call (zenlead.kube)
        ├── NotFoundError      404
        ├── ConflictError      409 with a stale resourceVersion or failed precondition
        │   └── AlreadyExistsError   409 AlreadyExists
        ├── GoneError          410: a watch's resourceVersion is too old; relist
        ├── ForbiddenError     403: RBAC denies the call
        ├── InvalidError       422: the API server's validation rejected the object
        ├── ThrottledError     429 (`retry_after`: seconds the server asked us to wait)
        ├── ServerError        5xx
        └── UnavailableError   no HTTP answer (connection refused, timeout, TLS)
"""

from __future__ import annotations

__all__ = (
    "AlreadyExistsError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "InvalidError",
    "KubeError",
    "NotFoundError",
    "NotLeadingError",
    "ServerError",
    "StaleCacheError",
    "ThrottledError",
    "UnavailableError",
    "ZenleadError",
)


class ZenleadError(Exception):
    """Base of every exception zen-lead raises on purpose."""


class ConfigError(ZenleadError):
    """A setting, flag or annotation is invalid; the message names the key and the reason."""


class NotLeadingError(ZenleadError):
    """A write was refused because this replica does not hold a valid Lease at send time."""


class StaleCacheError(ZenleadError):
    """The informer cache has not caught up with a write of ours; reconcile again shortly."""


class CircuitOpenError(ZenleadError):
    """An ordinary API call was refused locally because the API server keeps failing.

    `retry_after` is the time until the circuit lets a trial call through.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        """Record `message` and when to try again."""
        super().__init__(message)
        self.retry_after = retry_after


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
    """The API server asked us to slow down (429); `retry_after` is its Retry-After, seconds."""

    def __init__(self, message: str, *, status: int = 429, retry_after: float = 1.0) -> None:
        """Record `message`, the status and how long the server asked us to wait."""
        super().__init__(message, status=status)
        self.retry_after = retry_after


class ServerError(KubeError):
    """The API server failed (5xx)."""


class UnavailableError(KubeError):
    """No HTTP answer: connection refused or reset, timeout, TLS failure."""
