"""Certificates for a loopback control plane: a CA, the API server's serving cert, an admin client cert and
the service-account signing key, all fresh per run and written as PEM files into the run's folder.

The admin is in group `system:masters`, which RBAC always allows; everything else (the chart's
ServiceAccount, for instance) goes through the real RBAC authoriser.
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN_USER = "mlrollouts-admin"
ADMIN_GROUP = "system:masters"
VALIDITY = datetime.timedelta(days=7)


@dataclass(frozen=True)
class ControlPlaneCerts:
    """Paths of the PEM files one control plane run uses."""

    ca_cert: pathlib.Path
    serving_cert: pathlib.Path
    serving_key: pathlib.Path
    admin_cert: pathlib.Path
    admin_key: pathlib.Path
    service_account_key: pathlib.Path  # private key: signs tokens
    service_account_pub: pathlib.Path  # public key: verifies them


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_key(path: pathlib.Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def generate(folder: pathlib.Path) -> ControlPlaneCerts:
    """Write a fresh CA, serving and admin certificates and a service-account key pair into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_name = _key(), _name("mlrollouts-local-ca")
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, ca=True)
    serving_key = _key()
    serving = _certificate(
        _name("kube-apiserver"),
        serving_key,
        ca_name,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        hosts=("127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
    )
    admin_key = _key()
    admin = _certificate(
        _name(ADMIN_USER, ADMIN_GROUP), admin_key, ca_name, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    sa_key = _key()
    certs = ControlPlaneCerts(
        ca_cert=folder / "ca.crt",
        serving_cert=folder / "apiserver.crt",
        serving_key=folder / "apiserver.key",
        admin_cert=folder / "admin.crt",
        admin_key=folder / "admin.key",
        service_account_key=folder / "sa.key",
        service_account_pub=folder / "sa.pub",
    )
    pem = serialization.Encoding.PEM
    certs.ca_cert.write_bytes(ca.public_bytes(pem))
    certs.serving_cert.write_bytes(serving.public_bytes(pem))
    certs.admin_cert.write_bytes(admin.public_bytes(pem))
    _write_key(certs.serving_key, serving_key)
    _write_key(certs.admin_key, admin_key)
    _write_key(certs.service_account_key, sa_key)
    certs.service_account_pub.write_bytes(
        sa_key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return certs
