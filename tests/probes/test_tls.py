"""The shared client TLS contexts of probes._tls."""

from __future__ import annotations

import ssl

import pytest

from probes import _tls


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test an empty context cache."""
    monkeypatch.setattr(_tls, "_CONTEXTS", {})


def test_one_context_per_setting() -> None:
    """Each verification setting has one shared context, built once."""
    assert _tls.client_context(verify=True) is _tls.client_context(verify=True)
    assert _tls.client_context(verify=False) is not _tls.client_context(verify=True)


def test_verifying_context_checks_names() -> None:
    """The verifying context requires a certificate and checks the host name."""
    context = _tls.client_context(verify=True)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_non_verifying_context_accepts_anything() -> None:
    """The non-verifying context checks neither certificate nor name."""
    context = _tls.client_context(verify=False)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)
