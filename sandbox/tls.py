"""Per-start key material: a private CA + server leaf for TLS, and the app's client certificate.

The CA and leaf carry the extensions strict verifiers expect (CA: BasicConstraints
ca=True, KeyUsage, SKI; leaf: SAN IP:127.0.0.1 + DNS:localhost, EKU serverAuth, AKI).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerTls:
    ca_path: Path
    cert_path: Path
    key_path: Path

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx


@dataclass(frozen=True)
class ClientCertificate:
    """The certificate registered on the sandbox app (for client-assertion auth)."""

    private_key_path: Path
    certificate_path: Path
    thumbprint: str  # SHA-1 of the DER certificate, upper-case hex (what Azure shows)
    x5t: str  # base64url SHA-1, no padding (JWT header form)
    x5t_s256: str  # base64url SHA-256, no padding
    certificate: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Graph Mail Sandbox"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return builder.not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=days))


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file readable only by the owner."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def generate_server_tls(state_dir: Path) -> ServerTls:
    """Create ca.pem, server.pem and server.key in ``state_dir``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        _validity(x509.CertificateBuilder(), 365)
        .subject_name(_name("Graph Mail Sandbox Test CA"))
        .issuer_name(_name("Graph Mail Sandbox Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        _validity(x509.CertificateBuilder(), 90)
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = state_dir / "ca.pem"
    cert_path = state_dir / "server.pem"
    key_path = state_dir / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf_cert.public_bytes(serialization.Encoding.PEM)
                          + ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(leaf_key))
    return ServerTls(ca_path, cert_path, key_path)


def _b64url(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def generate_client_certificate(state_dir: Path, common_name: str) -> ClientCertificate:
    """Create the app's RSA key pair and self-signed certificate (client_key.pem, client_cert.pem)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        _validity(x509.CertificateBuilder(), 365)
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    key_path = state_dir / "client_key.pem"
    cert_path = state_dir / "client_cert.pem"
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    sha1 = hashlib.sha1(der).digest()
    return ClientCertificate(key_path, cert_path, sha1.hex().upper(), _b64url(sha1),
                             _b64url(hashlib.sha256(der).digest()), cert)
