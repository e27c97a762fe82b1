"""Client TLS contexts shared by every HTTPS checker.

Building an `ssl.SSLContext` loads the system CA bundle, which costs tens of milliseconds; done
per checker it would stall the event loop when thousands of targets appear at once. So there is
one context per verification setting for the whole process, created on first use and reused by
every connection (contexts are safe to share: per-connection state lives in the `SSLObject`).

- ``client_context(verify=True)``: ``CERT_REQUIRED`` with ``check_hostname``, trusting the
  default CA locations (which honour ``SSL_CERT_FILE`` and ``SSL_CERT_DIR``, so a cluster's CA
  bundle can be mounted and named there).
- ``client_context(verify=False)``: ``CERT_NONE``; the caller still passes a server name so that
  SNI is sent when one is configured.

The server name itself is chosen per connection by the caller (`server_hostname`), never stored
in the context: a shared context carries no per-target state.
"""

from __future__ import annotations

import ssl

__all__ = ("client_context",)

_CONTEXTS: dict[bool, ssl.SSLContext] = {}
"""The process-wide contexts, keyed by `verify`; tests may swap in one that trusts their CA."""


def client_context(*, verify: bool) -> ssl.SSLContext:
    """Return the shared client context that verifies certificates and names iff `verify`."""
    context = _CONTEXTS.get(verify)
    if context is None:
        context = _CONTEXTS[verify] = _build(verify=verify)
    return context


def _build(*, verify: bool) -> ssl.SSLContext:
    """Create a client context; HTTP/1.1 only, since the prober speaks nothing else."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        # Order matters: check_hostname must be off before verify_mode may drop to CERT_NONE.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context
