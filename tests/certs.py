"""
Certificates made on the spot for TLS tests: a root CA, an intermediate CA
and a server certificate for localhost and 127.0.0.1, as PEM bytes.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TestPKI:
    """
    PEM material of a small certificate hierarchy.
    """

    root_pem: bytes
    intermediate_pem: bytes
    server_pem: bytes
    server_key_pem: bytes
    other_key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


PrivateKey = Union[ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]


def _key(algorithm: str = "ec") -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: PrivateKey,
    issuer: str,
    issuer_key: PrivateKey,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
    # Ed25519 signs without a separate hash.
    digest: Optional[hashes.SHA256] = (
        None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )
    return builder.sign(issuer_key, digest)


def make_pki(algorithm: str = "ec") -> TestPKI:
    """
    Make a root CA, an intermediate signed by it, and a server certificate
    for ``localhost``/``127.0.0.1`` signed by the intermediate.

    :param algorithm: ``"ec"`` (P-256, the default) or ``"ed25519"``, for
        every key made, including ``other_key_pem``.
    """
    root_key, intermediate_key, server_key = (_key(algorithm) for _ in range(3))
    root = _certificate("ccm test root", root_key, "ccm test root", root_key, ca=True)
    intermediate = _certificate(
        "ccm test intermediate", intermediate_key, "ccm test root", root_key, ca=True
    )
    server = _certificate(
        "localhost", server_key, "ccm test intermediate", intermediate_key, ca=False
    )
    encoding = serialization.Encoding.PEM
    return TestPKI(
        root_pem=root.public_bytes(encoding),
        intermediate_pem=intermediate.public_bytes(encoding),
        server_pem=server.public_bytes(encoding),
        server_key_pem=_key_pem(server_key),
        other_key_pem=_key_pem(_key(algorithm)),
    )


def encrypted_key_pem(key_pem: bytes, password: bytes) -> bytes:
    """
    The same private key as ``key_pem``, as PEM encrypted with ``password``.
    """
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
