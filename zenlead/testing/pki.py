"""Certificates and keys for a local control plane, generated fresh for every start.

`ControlPlane` calls `write_pki` once per start. It returns the paths the kube-apiserver flags
and the kubeconfig need: a CA that signs the serving certificate (127.0.0.1 and the in-cluster
names) and the admin client certificate (group ``system:masters``), and an RSA key pair for
service-account tokens. Nothing is reused between runs, so no test can depend on stale keys.

`issue_client_cert` signs further client certificates with the same CA (`ControlPlane.issue_user`
uses it), so a test can run a client as an ordinary user: RBAC and API Priority and Fairness
apply to it, where ``system:masters`` is exempt from both.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from typing import TYPE_CHECKING, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    import pathlib
    from collections.abc import Sequence

__all__ = ("ADMIN_GROUP", "ADMIN_USER", "ClientCert", "Pki", "issue_client_cert", "write_pki")

ADMIN_USER = "zen-lead-admin"
"""User name in the admin client certificate."""

ADMIN_GROUP = "system:masters"
"""Group of the admin client certificate; the API server's bootstrap RBAC lets it do anything."""

_VALIDITY = datetime.timedelta(days=7)
_SERVING_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")

_Key: TypeAlias = ec.EllipticCurvePrivateKey


@dataclasses.dataclass(frozen=True)
class Pki:
    """Paths of the PEM files written by `write_pki`.

    Attributes:
        ca_cert: CA certificate; trusts the server and signs client certificates.
        serving_cert: kube-apiserver serving certificate.
        serving_key: its key.
        admin_cert: client certificate of the admin identity.
        admin_key: its key.
        sa_public: public half of the service-account signing key.
        sa_private: private half of the service-account signing key.
        ca_key: the CA's private key, kept so `issue_client_cert` can sign more clients.

    """

    ca_cert: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path
    admin_cert: pathlib.Path
    admin_key: pathlib.Path
    sa_public: pathlib.Path
    sa_private: pathlib.Path
    ca_key: pathlib.Path


@dataclasses.dataclass(frozen=True)
class ClientCert:
    """Paths of a client certificate written by `issue_client_cert`.

    Attributes:
        cert: the certificate (PEM).
        key: its private key (PEM, mode 0600).

    """

    cert: pathlib.Path
    key: pathlib.Path


def write_pki(directory: pathlib.Path, *, ips: tuple[str, ...]) -> Pki:
    """Write a fresh CA, serving and admin certificates and SA keys into `directory`.

    `ips` are the addresses the serving certificate is valid for (the bind address and the first
    IP of the service range, which in-cluster clients use).
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _new_key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zen-lead-test-ca")])
    ca = _sign(
        _builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True),
        ca_key,
    )
    serving_key = _new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in _SERVING_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    serving = _sign(
        _leaf(
            _cn("kube-apiserver"), ca_name, serving_key, ExtendedKeyUsageOID.SERVER_AUTH
        ).add_extension(x509.SubjectAlternativeName(sans), critical=False),
        ca_key,
    )
    pki = Pki(*(directory / n for n in _FILE_NAMES))
    _write(pki.ca_cert, _cert_pem(ca))
    _write(pki.ca_key, _key_pem(ca_key))
    _write(pki.serving_cert, _cert_pem(serving))
    _write(pki.serving_key, _key_pem(serving_key))
    _write_client(ClientCert(pki.admin_cert, pki.admin_key), ca, ca_key, ADMIN_USER, (ADMIN_GROUP,))
    _write_sa_keys(pki)
    return pki


def issue_client_cert(
    creds: Pki, directory: pathlib.Path, *, stem: str, user: str, groups: Sequence[str] = ()
) -> ClientCert:
    """Sign a client certificate for `user` in `groups` with the CA of `creds`.

    Writes ``<stem>.crt`` and ``<stem>.key`` into `directory` and returns their paths. The API
    server takes the common name as the user name and each organisation as a group.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(creds.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{creds.ca_key} is not the EC key write_pki makes")
    issued = ClientCert(directory / f"{stem}.crt", directory / f"{stem}.key")
    _write_client(issued, ca, ca_key, user, tuple(groups))
    return issued


_FILE_NAMES = (
    "ca.crt",
    "apiserver.crt",
    "apiserver.key",
    "admin.crt",
    "admin.key",
    "sa.pub",
    "sa.key",
    "ca.key",
)


def _write_client(
    paths: ClientCert, ca: x509.Certificate, ca_key: _Key, user: str, groups: tuple[str, ...]
) -> None:
    key = _new_key()
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    subject = x509.Name([*names, x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = _sign(_leaf(subject, ca.subject, key, ExtendedKeyUsageOID.CLIENT_AUTH), ca_key)
    _write(paths.cert, _cert_pem(cert))
    _write(paths.key, _key_pem(key))


def _new_key() -> _Key:
    # P-256 keys are generated in microseconds; RSA-2048 would cost ~100 ms each.
    return ec.generate_private_key(ec.SECP256R1())


def _cn(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _builder(subject: x509.Name, issuer: x509.Name, key: _Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _leaf(
    subject: x509.Name, issuer: x509.Name, key: _Key, usage: x509.ObjectIdentifier
) -> x509.CertificateBuilder:
    return (
        _builder(subject, issuer, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: _Key) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_sa_keys(pki: Pki) -> None:
    # Service-account tokens are signed with RS256 by default, so this key is RSA.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki.sa_private, _key_pem(key))
    _write(pki.sa_public, public)


def _write(path: pathlib.Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
