"""Generated certificates form a chain the API server and clients accept."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from zenlead.testing import pki

if TYPE_CHECKING:
    import pathlib


def _load(path: pathlib.Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_serving_cert_is_signed_by_ca_for_the_given_ips(tmp_path: pathlib.Path) -> None:
    """The serving certificate chains to the CA and names the bind and service IPs."""
    creds = pki.write_pki(tmp_path, ips=("127.0.0.1", "10.0.0.1"))
    ca, serving = _load(creds.ca_cert), _load(creds.serving_cert)
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.1"),
    }
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)


def test_admin_cert_is_in_system_masters(tmp_path: pathlib.Path) -> None:
    """The admin client certificate's organisation is the group RBAC treats as superuser."""
    creds = pki.write_pki(tmp_path, ips=("127.0.0.1",))
    admin = _load(creds.admin_cert)
    admin.verify_directly_issued_by(_load(creds.ca_cert))
    org = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == pki.ADMIN_GROUP
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.ADMIN_USER


def test_keys_are_private_and_fresh(tmp_path: pathlib.Path) -> None:
    """Key files are mode 0600, and two runs never share a key."""
    first = pki.write_pki(tmp_path / "a", ips=("127.0.0.1",))
    second = pki.write_pki(tmp_path / "b", ips=("127.0.0.1",))
    for path in (first.serving_key, first.admin_key, first.sa_private):
        assert path.stat().st_mode & 0o777 == 0o600
    assert first.sa_private.read_bytes() != second.sa_private.read_bytes()
    key = serialization.load_pem_private_key(first.sa_private.read_bytes(), password=None)
    assert key.key_size == 2048  # type: ignore[union-attr]
