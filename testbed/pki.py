"""Real X.509 material for tests: a CA and leaf certificates signed by it, as PEM strings.

Used where the program's certificates must be real to be tested honestly: the Pulumi mocks return these
for `tls:` resources, and the Dask processes of the TLS tests and benchmarks load them. Built with
`cryptography` (the library pulumi-tls's outputs are read with everywhere else too); ECDSA P-256 keeps
generation fast (~1 ms a key).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class Pem:
    cert: str
    key: str


def private_key_pem() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key, pem


def load_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)


def make_ca(common_name: str = "test-ca", key_pem: str | None = None) -> Pem:
    key, pem = (load_key(key_pem), key_pem) if key_pem else private_key_pem()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode(), pem)


def sign_leaf(
    ca: Pem,
    public_key_pem: str,
    common_name: str,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = True,
    client: bool = True,
) -> str:
    """A leaf certificate for an existing public key (what a signed CSR gives)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.encode())
    public_key = serialization.load_pem_public_key(public_key_pem.encode())
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now())
        .not_valid_after(_now() + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(load_key(ca.key), hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_csr(key_pem: str, common_name: str, dns_names: tuple[str, ...] = ()) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False
        )
    return builder.sign(load_key(key_pem), hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def sign_csr(ca: Pem, csr_pem: str, allowed_uses: tuple[str, ...]) -> str:
    """What pulumi-tls's LocallySignedCert does with a CSR: subject and SANs kept, usages as named."""
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(sans.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        dns = ()
    common_name = str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    public = csr.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return sign_leaf(
        ca,
        public.decode(),
        common_name,
        dns,
        server="server_auth" in allowed_uses,
        client="client_auth" in allowed_uses,
    )


def public_key_of(key_pem: str) -> str:
    return (
        load_key(key_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def make_leaf(ca: Pem, common_name: str, dns_names: tuple[str, ...] = ("localhost",)) -> Pem:
    _, key_pem = private_key_pem()
    cert = sign_leaf(ca, public_key_of(key_pem), common_name, dns_names, ip_addresses=("127.0.0.1",))
    return Pem(cert, key_pem)


@dataclass(frozen=True)
class TlsFiles:
    """One CA and files for each role, written to a directory (mode 0600 keys)."""

    ca_file: Path
    cert: Path
    key: Path

    def dask_config(self, roles: tuple[str, ...] = ("scheduler", "worker", "client")) -> dict[str, str]:
        """The `distributed.comm.tls.*` keys (flattened, dotted) that make every role use these files."""
        config = {
            "distributed.comm.tls.ca-file": str(self.ca_file),
            "distributed.comm.require-encryption": "True",
        }
        for role in roles:
            config[f"distributed.comm.tls.{role}.cert"] = str(self.cert)
            config[f"distributed.comm.tls.{role}.key"] = str(self.key)
        return config

    def env(self, roles: tuple[str, ...] = ("scheduler", "worker", "client")) -> dict[str, str]:
        """The same as DASK_* environment variables (Dask's own convention), for child processes."""
        return {
            "DASK_" + key.upper().replace(".", "__").replace("-", "_"): value
            for key, value in self.dask_config(roles).items()
        }


def write_tls_files(directory: Path, ca: Pem, leaf: Pem) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    paths = TlsFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    paths.ca_file.write_text(ca.cert)
    paths.cert.write_text(leaf.cert)
    paths.key.write_text(leaf.key)
    paths.key.chmod(0o600)
    return paths


def make_service_leaf(ca: Pem, common_name: str, dns_names: tuple[str, ...]) -> Pem:
    """A leaf naming only `dns_names` (no localhost, no IP): what the stack's scheduler certificate is."""
    _, key_pem = private_key_pem()
    return Pem(sign_leaf(ca, public_key_of(key_pem), common_name, dns_names), key_pem)
