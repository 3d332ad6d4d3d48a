"""Every key and certificate a real deployment needs, in one folder (`fl-crb keys`).

Three independent mechanisms protect a deployment, and each needs its own keys:

- TLS between every Flower process and the SuperLink: a private CA signs the SuperLink's
  server certificate; every SuperNode, `flwr` CLI and ServerApp checks the SuperLink
  against the CA certificate (Flower: `--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile`
  on `flower-superlink`, `--root-certificates` on `flower-supernode`, `root-certificates`
  in the CLI's connection config).
- SuperNode authentication: one ECDSA P-384 key pair per SuperNode (OpenSSH format, what
  Flower 1.42 reads). The SuperLink runs with `--enable-supernode-auth` and accepts only
  nodes whose public key was registered (`flwr supernode register KEY.pub FEDERATION`);
  a node signs every Fleet request with `--auth-supernode-private-key`.
- Sealed uploads (`crypto`): X25519 key pairs for the authority and for each terminal, so
  that only the authority can read a terminal's trajectories and knows who sealed them.

Layout (private keys 0600, the folder 0700; `copy_plan` says which file goes where):

    ca.crt, ca.key                 the CA (keep ca.key off the deployment machines)
    superlink.crt, superlink.key   the SuperLink's TLS certificate and key
    supernodes/<host>.key, .pub    SuperNode authentication key pair of each edge/terminal
    uploads/authority.key, .pub    the authority's X25519 key pair (PKCS#8 / SPKI PEM)
    uploads/<terminal>.key, .pub   each terminal's X25519 key pair
    keys.json                      what was made: hosts, roles, SANs, validity

Host names come from a topology, so every host of the deployment gets its keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fl_crb.federation.crypto import generate_private_key, public_key_bytes, save_private_key
from fl_crb.topology import Topology

DEFAULT_SANS = ("127.0.0.1", "localhost")
"""Always in the SuperLink certificate: its own ServerApp runner connects over loopback."""
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates are valid from this long before their creation (clocks disagree a little)."""
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class KeysExistError(FileExistsError):
    """`create_keys` would overwrite existing keys and was not told to."""


@dataclass(frozen=True)
class KeyPlan:
    """Which keys to make for one deployment."""

    authority_host: str
    """Host of the trusted authority (the topology's cloud): SuperLink and ServerApp."""
    supernodes: dict[str, str]
    """SuperNode host name → role ("edge" or "terminal"); each gets an auth key pair."""
    terminals: tuple[str, ...]
    """Terminals that seal uploads; each gets an X25519 key pair."""
    sans: tuple[str, ...] = DEFAULT_SANS
    """IP addresses and DNS names the SuperLink is reached at (its certificate's SANs)."""
    valid_days: int = 365
    """Validity of the SuperLink certificate in days (the CA's is ten times longer)."""


def plan_for_topology(topology: Topology, sans: list[str], valid_days: int = 365) -> KeyPlan:
    """Keys for every host of `topology`; `sans` are added to 127.0.0.1 and localhost."""
    if valid_days < 1:
        raise ValueError(f"certificate validity must be at least 1 day, got {valid_days}")
    roles = {name: "edge" for name in topology.edge_names}
    roles.update({name: "terminal" for name in topology.terminal_names})
    for value in sans:
        subject_alternative_name(value)  # refuse a bad name before writing anything
    return KeyPlan(
        authority_host=topology.cloud_host,
        supernodes=roles,
        terminals=tuple(topology.terminal_names),
        sans=tuple(dict.fromkeys([*DEFAULT_SANS, *sans])),
        valid_days=valid_days,
    )


def subject_alternative_name(value: str) -> x509.GeneralName:
    """An IP address or DNS name for a certificate; ValueError naming a bad `value`."""
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _DNS_NAME.match(value):
        raise ValueError(
            f"SAN {value!r} is neither an IP address nor a DNS host name "
            "(letters, digits, '-' and '.', e.g. 10.0.0.1 or authority.example.org)"
        )
    return x509.DNSName(value)


@dataclass(frozen=True)
class KeyFolder:
    """Where each key lies in a folder made by `create_keys`, and how to read them."""

    path: Path
    """The keys folder."""

    @property
    def ca_certificate(self) -> Path:
        """The CA certificate: every machine checks the SuperLink against it."""
        return self.path / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA private key: only needed to issue certificates; keep it offline."""
        return self.path / "ca.key"

    @property
    def superlink_certificate(self) -> Path:
        """The SuperLink's TLS certificate (`--ssl-certfile`)."""
        return self.path / "superlink.crt"

    @property
    def superlink_key(self) -> Path:
        """The SuperLink's TLS private key (`--ssl-keyfile`)."""
        return self.path / "superlink.key"

    @property
    def authority_upload_key(self) -> Path:
        """The authority's X25519 private key (opens uploads)."""
        return self.path / "uploads" / "authority.key"

    @property
    def authority_upload_public_key(self) -> Path:
        """The authority's X25519 public key (terminals seal for it)."""
        return self.path / "uploads" / "authority.pub"

    @property
    def manifest(self) -> Path:
        """keys.json: hosts, roles, SANs and validity of the folder's keys."""
        return self.path / "keys.json"

    def supernode_key(self, host: str) -> Path:
        """The SuperNode auth private key of `host` (OpenSSH PEM)."""
        return self.path / "supernodes" / f"{host}.key"

    def supernode_public_key(self, host: str) -> Path:
        """The SuperNode auth public key of `host` (one OpenSSH line) to register."""
        return self.path / "supernodes" / f"{host}.pub"

    def terminal_upload_key(self, terminal: str) -> Path:
        """The X25519 private key `terminal` seals its uploads with."""
        return self.path / "uploads" / f"{terminal}.key"

    def terminal_upload_public_key(self, terminal: str) -> Path:
        """The X25519 public key of `terminal` (the authority checks uploads against it)."""
        return self.path / "uploads" / f"{terminal}.pub"

    def require(self, *paths: Path) -> None:
        """FileNotFoundError naming the first missing file and how to make it."""
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing from keys folder {self.path}; create the folder with "
                    "`fl-crb keys --topology T --out DIR` (it makes every host's keys)"
                )

    def read_manifest(self) -> dict:
        """keys.json: the plan the folder was made from."""
        self.require(self.manifest)
        return json.loads(self.manifest.read_text(encoding="utf-8"))

    def terminal_upload_public_keys(self) -> dict[str, bytes]:
        """Raw X25519 public key of every terminal in the folder (`UploadOpener`'s input)."""
        terminals = self.read_manifest()["terminals"]
        return {
            name: load_upload_public_key(self.terminal_upload_public_key(name))
            for name in terminals
        }


def certificate_names(path: Path) -> list[str]:
    """The IP addresses and DNS names a certificate is valid for (its SANs)."""
    certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in names]


def load_upload_public_key(path: Path) -> bytes:
    """The raw 32-byte X25519 public key in a .pub file of the uploads folder."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, X25519PublicKey):
        raise ValueError(f"{path}: expected an X25519 public key, found {type(key).__name__}")
    return public_key_bytes(key)


def create_keys(folder: Path, plan: KeyPlan, force: bool = False) -> list[Path]:
    """Write every key and certificate of `plan` into `folder`; the files written.

    Refuses (`KeysExistError`, before writing anything) if any of them exists, unless
    `force`: then every one is replaced, the CA included, so old certificates and
    registrations stop matching.
    """
    keys = KeyFolder(Path(folder))
    planned = _planned_files(keys, plan)
    existing = [path for path in planned if path.exists()]
    if existing and not force:
        shown = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise KeysExistError(
            f"keys exist already: {shown}{more}; pass --force to replace them all "
            "(every host then needs its new keys, and nodes must be registered again)"
        )
    for subfolder in (keys.path, keys.path / "supernodes", keys.path / "uploads"):
        subfolder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in existing:
        path.unlink()  # fresh files get fresh modes
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = _ca_certificate(ca_key, now, plan)
    _write_private_pem(keys.ca_key, ca_key)
    _write(keys.ca_certificate, ca_certificate.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _server_certificate(server_key, ca_key, ca_certificate, now, plan)
    _write_private_pem(keys.superlink_key, server_key)
    _write(keys.superlink_certificate, server.public_bytes(serialization.Encoding.PEM))
    for host in plan.supernodes:
        node_key = ec.generate_private_key(ec.SECP384R1())
        private = node_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        _write(keys.supernode_key(host), private, private=True)
        public = node_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        _write(keys.supernode_public_key(host), public + f" fl-crb-{host}\n".encode())
    holders = [
        (keys.authority_upload_key, keys.authority_upload_public_key),
        *(
            (keys.terminal_upload_key(t), keys.terminal_upload_public_key(t))
            for t in plan.terminals
        ),
    ]
    for private_path, public_path in holders:
        upload_key = generate_private_key()
        save_private_key(upload_key, private_path)
        spki = upload_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write(public_path, spki)
    manifest = {
        "authority_host": plan.authority_host,
        "supernodes": plan.supernodes,
        "terminals": list(plan.terminals),
        "superlink_sans": list(plan.sans),
        "authority_upload_public_key_hex": load_upload_public_key(
            keys.authority_upload_public_key
        ).hex(),
        "created_utc": now.isoformat(timespec="seconds"),
        "superlink_certificate_valid_days": plan.valid_days,
    }
    _write(keys.manifest, (json.dumps(manifest, indent=1) + "\n").encode())
    return planned


def copy_plan(plan: KeyPlan) -> dict[str, list[str]]:
    """Host name → files (relative to the keys folder) that host needs; ca.key goes nowhere."""
    keys = KeyFolder(Path())
    authority = [
        keys.manifest,
        keys.ca_certificate,
        keys.superlink_certificate,
        keys.superlink_key,
        keys.authority_upload_key,
        *(keys.supernode_public_key(host) for host in plan.supernodes),
        *(keys.terminal_upload_public_key(t) for t in plan.terminals),
    ]
    result = {plan.authority_host: [str(path) for path in authority]}
    for host in plan.supernodes:
        files = [keys.ca_certificate, keys.supernode_key(host)]
        if host in plan.terminals:
            files += [keys.terminal_upload_key(host), keys.authority_upload_public_key]
        result[host] = [str(path) for path in files]
    return result


def _planned_files(keys: KeyFolder, plan: KeyPlan) -> list[Path]:
    files = [
        keys.ca_key,
        keys.ca_certificate,
        keys.superlink_key,
        keys.superlink_certificate,
        keys.authority_upload_key,
        keys.authority_upload_public_key,
    ]
    for host in plan.supernodes:
        files += [keys.supernode_key(host), keys.supernode_public_key(host)]
    for terminal in plan.terminals:
        files += [keys.terminal_upload_key(terminal), keys.terminal_upload_public_key(terminal)]
    return [*files, keys.manifest]


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, now: datetime.datetime, plan: KeyPlan
) -> x509.Certificate:
    """The self-signed CA certificate (may sign end-entity certificates only)."""
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"fl-crb CA ({plan.authority_host})")]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=10 * plan.valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(certificate_signing=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_certificate: x509.Certificate,
    now: datetime.datetime,
    plan: KeyPlan,
) -> x509.Certificate:
    """The SuperLink's TLS server certificate for `plan.sans`, signed by the CA."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"fl-crb SuperLink ({plan.authority_host})")]
    )
    ca_identifier = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=plan.valid_days))
        .add_extension(
            x509.SubjectAlternativeName([subject_alternative_name(s) for s in plan.sans]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(certificate_signing=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_identifier.value),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(certificate_signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not certificate_signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=certificate_signing,
        crl_sign=certificate_signing,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private_pem(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(path, pem, private=True)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Create `path` (0600 if private, else 0644 less the umask) with `data`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
