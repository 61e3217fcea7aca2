"""The gateway's TLS identity: a private CA and a server certificate it signs.

A gateway started without ``--cert``/``--key`` creates both in its data
directory on first start and reuses them afterwards. Edges and admin clients
pin ``ca.crt`` (``--ca``); nobody runs with certificate checks off.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeswarm.identity import write_private

CERT_VALIDITY = datetime.timedelta(days=825)
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class CertificatePaths:
    """Where a gateway's TLS material lives."""

    ca: Path
    """CA certificate that clients pin."""
    cert: Path
    """Server certificate, signed by the CA."""
    key: Path
    """Server private key (mode 0600)."""


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_certificates(
    directory: Path, *, names: tuple[str, ...] = DEFAULT_NAMES, common_name: str = "edgeswarm"
) -> CertificatePaths:
    """Create a CA and a server certificate for ``names`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = CertificatePaths(
        ca=directory / "ca.crt", cert=directory / "gateway.crt", key=directory / "gateway.key"
    )
    write_private(directory / "ca.key", _pem_key(ca_key))
    write_private(paths.key, _pem_key(key))
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def ensure_certificates(
    directory: Path, *, names: tuple[str, ...] = DEFAULT_NAMES
) -> CertificatePaths:
    """Reuse the certificates in ``directory``, creating them on first start."""
    paths = CertificatePaths(
        ca=directory / "ca.crt", cert=directory / "gateway.crt", key=directory / "gateway.key"
    )
    if paths.ca.exists() and paths.cert.exists() and paths.key.exists():
        return paths
    return create_certificates(directory, names=names)
