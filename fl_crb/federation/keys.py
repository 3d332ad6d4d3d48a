"""Every key and certificate of a deployment, one bundle per host (`fl-crb keys`).

Four mechanisms protect a deployment, each with its own keys:

- TLS between every Flower process and the SuperLink: a private CA signs the SuperLink's
  server certificate; every SuperNode, `flwr` CLI and ServerApp checks the SuperLink
  against the CA certificate (Flower: `--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile`
  on `flower-superlink`, `--root-certificates` on `flower-supernode`, `root-certificates`
  in the CLI's connection config).
- SuperNode authentication: one ECDSA P-384 key pair per SuperNode (OpenSSH format, what
  Flower 1.42 reads). The SuperLink runs with `--enable-supernode-auth` and accepts only
  nodes whose public key was registered (`flwr supernode register KEY.pub FEDERATION`);
  a node signs every Fleet request with `--auth-supernode-private-key`.
- Sealed messages (`crypto`, `message_auth`): X25519 key pairs of the authority, of each
  terminal (uploads sealed for the authority, acknowledgements MACed for the terminal)
  and of each edge (batches sealed for it).
- Signed weights (`message_auth`): one Ed25519 key pair per edge.

Layout of the folder `create_keys` writes (folders 0700, private keys 0600):

    keys.json          index: hosts, roles, managing edges, SANs, key ids (public only)
    ca/ca.crt, ca.key  the CA; ca.key is in NO bundle: keep it offline, it only issues
                       certificates
    <host>/            the bundle of each host of the topology (`host_bundle` lists what
                       each role's holds): copy it, and only it, to that host

A bundle uses the paths of the single folder older versions wrote (`ca.crt`,
`superlink.key`, `supernodes/<host>.key`, `uploads/<terminal>.key`, ...), so a bundle
copied to its host as `keys/` keeps the paths of docs/deployment.md. No private key is
in two bundles. `KeyFolder` reads the whole folder as one deployment on one machine
(`fl-crb federate --local`, the tests): a view over the bundles, each file in the bundle
that holds it. Host names come from a topology; "ca" is reserved.
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

from fl_crb.federation.crypto import generate_private_key
from fl_crb.federation.host_bundle import (
    FORMAT,
    MANIFEST,
    BundleFile,
    HostBundle,
    Role,
    bundle_files,
    key_id,
)
from fl_crb.federation.message_auth import generate_signing_key
from fl_crb.topology import Topology

DEFAULT_SANS = ("127.0.0.1", "localhost")
"""Always in the SuperLink certificate: its own ServerApp runner connects over loopback."""
CLOCK_SKEW = datetime.timedelta(minutes=5)
"""Certificates are valid from this long before their creation (clocks disagree a little)."""
CA_FOLDER = "ca"
"""Folder of the CA's certificate and private key, beside the bundles (a reserved name)."""
INDEX = "keys.json"
"""The folder's index: public facts only."""
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_GENERATE = {
    "supernode-auth": lambda: ec.generate_private_key(ec.SECP384R1()),
    "sealing": generate_private_key,
    "batch-opening": generate_private_key,
    "weights-signing": generate_signing_key,
}
"""A fresh key pair for each purpose of `host_bundle.key_file`."""


class KeysExistError(FileExistsError):
    """`create_keys` would overwrite existing keys and was not told to."""


# -- what to make ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPlan:
    """Which keys to make for one deployment."""

    authority_host: str
    """Host of the trusted authority (the topology's cloud): SuperLink and ServerApp."""
    supernodes: dict[str, str]
    """SuperNode host name → role ("edge" or "terminal"); each gets an auth key pair."""
    terminals: tuple[str, ...]
    """Terminals that seal uploads; each gets an X25519 key pair."""
    managing_edges: dict[str, str]
    """Terminal → the edge whose signed weights it accepts."""
    sans: tuple[str, ...] = DEFAULT_SANS
    """IP addresses and DNS names the SuperLink is reached at (its certificate's SANs)."""
    valid_days: int = 365
    """Validity of the SuperLink certificate in days (the CA's is ten times longer)."""

    def __post_init__(self) -> None:
        hosts = [self.authority_host, *self.supernodes]
        if CA_FOLDER in hosts:
            raise ValueError(f"host name {CA_FOLDER!r} is reserved for the CA's folder; rename it")
        if self.authority_host in self.supernodes:
            raise ValueError(f"{self.authority_host!r} is both the authority and a SuperNode")
        for terminal in self.terminals:
            if self.supernodes.get(terminal) != "terminal":
                raise ValueError(f"terminal {terminal!r} is not a SuperNode of role terminal")
            if self.supernodes.get(self.managing_edges.get(terminal, "")) != "edge":
                raise ValueError(f"terminal {terminal!r} has no managing edge in the plan")

    @property
    def edges(self) -> tuple[str, ...]:
        """The edges, in plan order."""
        return tuple(host for host, role in self.supernodes.items() if role == "edge")

    def role(self, host: str) -> Role:
        """The role of `host`; KeyError for a host not in the plan."""
        return "authority" if host == self.authority_host else self.supernodes[host]

    def hosts(self) -> list[str]:
        """Every host: the authority, then the SuperNodes."""
        return [self.authority_host, *self.supernodes]


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
        managing_edges=dict(zip(topology.terminal_names, topology.managing_edges(), strict=True)),
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


# -- what each bundle holds -----------------------------------------------------------------


def _peers(plan: KeyPlan, host: str) -> dict:
    """What bundle.json records to fix a bundle's file list (`bundle_files`' arguments)."""
    role = plan.role(host)
    if role == "authority":
        return {
            "supernodes": list(plan.supernodes),
            "terminals": list(plan.terminals),
            "edges": list(plan.edges),
        }
    return {"managing_edge": plan.managing_edges[host]} if role == "terminal" else {}


def bundle_layout(plan: KeyPlan, host: str) -> list[BundleFile]:
    """The files of `host`'s bundle under `plan`, bundle.json aside."""
    peers = {k: tuple(v) if isinstance(v, list) else v for k, v in _peers(plan, host).items()}
    return bundle_files(plan.role(host), host, plan.authority_host, **peers)


# -- making them ----------------------------------------------------------------------------


def create_keys(folder: Path, plan: KeyPlan, force: bool = False) -> list[Path]:
    """Write the CA folder, every host's bundle and the index into `folder`; the files written.

    Refuses (`KeysExistError`, before writing anything) if any of them exists, or keys of
    the older single-folder layout do, unless `force`: then every one is replaced (the
    older layout's files removed), the CA included, so old certificates and registrations
    stop matching.
    """
    keys = KeyFolder(Path(folder))
    layouts = {host: bundle_layout(plan, host) for host in plan.hosts()}
    planned = [keys.ca_certificate, keys.ca_key, keys.manifest]
    for host, files in layouts.items():
        planned += [keys.path / host / f.path for f in files]
        planned.append(keys.path / host / MANIFEST)
    leftovers = _leftovers(keys.path, plan.hosts())
    existing = [path for path in planned + leftovers if path.exists()]
    if existing and not force:
        shown = ", ".join(str(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise KeysExistError(
            f"keys exist already: {shown}{more}; pass --force to replace them all "
            "(every host then needs its new bundle, and nodes must be registered again)"
        )
    for path in existing:
        path.unlink()  # fresh files get fresh modes
    for folder in sorted({path.parent for path in leftovers}, key=lambda p: -len(p.parts)):
        if folder != keys.path and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    now = datetime.datetime.now(datetime.UTC)
    material = _make_material(plan, now, layouts)
    _mkdir(keys.path / CA_FOLDER)
    _write(keys.ca_key, material["ca/ca.key"][0], private=True)
    _write(keys.ca_certificate, material["ca.crt"][0])
    for host, files in layouts.items():
        bundle = keys.bundle(host)
        for entry in files:
            _mkdir((bundle / entry.path).parent)
            _write(bundle / entry.path, material[entry.path][0], entry.kind == "private-key")
        manifest = {
            "format": FORMAT,
            "host": host,
            "role": plan.role(host),
            "authority_host": plan.authority_host,
            **_peers(plan, host),
            "files": {f.path: f.manifest_entry(material[f.path][1]) for f in files},
        }
        _write_json(bundle / MANIFEST, manifest)
    authority_pem = material["uploads/authority.pub"][0]
    index = {
        "authority_host": plan.authority_host,
        "supernodes": plan.supernodes,
        "terminals": list(plan.terminals),
        "managing_edges": plan.managing_edges,
        "bundles": {host: plan.role(host) for host in layouts},
        "ca": {"certificate": "ca/ca.crt", "key": "ca/ca.key, in no bundle: keep it offline"},
        "superlink_sans": list(plan.sans),
        "authority_upload_public_key_hex": load_upload_public_key(authority_pem).hex(),
        "key_ids": {path: key for path, (_, key) in material.items()},
        "created_utc": now.isoformat(timespec="seconds"),
        "superlink_certificate_valid_days": plan.valid_days,
    }
    _write_json(keys.manifest, index)
    return planned


def _make_material(plan: KeyPlan, now: datetime.datetime, layouts: dict) -> dict[str, tuple]:
    """Bundle path → (content, key id) of every file of `layouts`, and of ca/ca.key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_certificate = _ca_certificate(ca_key, now, plan)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    server = _server_certificate(tls_key, ca_key, ca_certificate, now, plan)
    material = {
        "ca/ca.key": (_pkcs8(ca_key), key_id(ca_key.public_key())),
        "ca.crt": (_pem(ca_certificate), key_id(ca_key.public_key())),
        "superlink.crt": (_pem(server), key_id(tls_key.public_key())),
        "superlink.key": (_pkcs8(tls_key), key_id(tls_key.public_key())),
    }
    pairs = {}  # (purpose, owner) → private key: one pair, its .key and .pub files
    for entry in (entry for files in layouts.values() for entry in files):
        if entry.path in material:
            continue
        key = pairs.get((entry.purpose, entry.owner))
        if key is None:
            key = pairs[entry.purpose, entry.owner] = _GENERATE[entry.purpose]()
        if entry.kind == "private-key":
            content = _openssh(key) if entry.purpose == "supernode-auth" else _pkcs8(key)
        else:
            content = _public_file(key.public_key(), entry)
        material[entry.path] = (content, key_id(key.public_key()))
    return material


def _leftovers(folder: Path, hosts: list[str]) -> list[Path]:
    """Files of `folder` a new set of bundles leaves stale: the single-folder layout older
    versions wrote, and the bundles of hosts no longer in the plan."""
    files = [folder / name for name in ("ca.key", "ca.crt", "superlink.key", "superlink.crt")]
    for sub in ("supernodes", "uploads"):
        if sub not in hosts:
            files += sorted((folder / sub).glob("*.key")) + sorted((folder / sub).glob("*.pub"))
    for manifest in sorted(folder.glob(f"*/{MANIFEST}")):
        if manifest.parent.name not in hosts:
            files += sorted(p for p in manifest.parent.rglob("*") if p.is_file())
    return files


# -- the whole folder on one machine ---------------------------------------------------------


@dataclass(frozen=True)
class KeyFolder:
    """The folder `create_keys` wrote, read as one deployment: each path in the bundle
    that holds it (the SuperLink's files in the authority's, a node's key in its own)."""

    path: Path
    """The keys folder."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def manifest(self) -> Path:
        """keys.json: hosts, roles, SANs, key ids of the folder's keys (public only)."""
        return self.path / INDEX

    @property
    def authority_host(self) -> str:
        """The authority's host (from keys.json; a placeholder while it is missing)."""
        if not self.manifest.is_file():
            return "<authority: keys.json missing>"
        return str(self.read_manifest()["authority_host"])

    def bundle(self, host: str) -> Path:
        """The bundle folder of `host`: copy it to that host."""
        return self.path / host

    def load_bundle(self, host: str, role: Role | None = None) -> HostBundle:
        """`host`'s bundle, checked (`HostBundle.load`)."""
        return HostBundle.load(self.bundle(host), role=role, host=host)

    @property
    def ca_certificate(self) -> Path:
        """The CA certificate (each bundle holds a copy)."""
        return self.path / CA_FOLDER / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """The CA private key: in no bundle; only needed to issue certificates."""
        return self.path / CA_FOLDER / "ca.key"

    @property
    def superlink_certificate(self) -> Path:
        """The SuperLink's TLS certificate (`--ssl-certfile`)."""
        return self.bundle(self.authority_host) / "superlink.crt"

    @property
    def superlink_key(self) -> Path:
        """The SuperLink's TLS private key (`--ssl-keyfile`)."""
        return self.bundle(self.authority_host) / "superlink.key"

    @property
    def authority_upload_key(self) -> Path:
        """The authority's X25519 private key (opens uploads, seals batches, MACs acks)."""
        return self.bundle(self.authority_host) / "uploads" / "authority.key"

    @property
    def authority_upload_public_key(self) -> Path:
        """The authority's X25519 public key (terminals seal for it)."""
        return self.bundle(self.authority_host) / "uploads" / "authority.pub"

    def supernode_key(self, host: str) -> Path:
        """The SuperNode auth private key of `host` (OpenSSH PEM), in its bundle."""
        return self.bundle(host) / "supernodes" / f"{host}.key"

    def supernode_public_key(self, host: str) -> Path:
        """The SuperNode auth public key of `host` to register, in the authority's bundle."""
        return self.bundle(self.authority_host) / "supernodes" / f"{host}.pub"

    def terminal_upload_key(self, terminal: str) -> Path:
        """The X25519 private key `terminal` seals its uploads with, in its bundle."""
        return self.bundle(terminal) / "uploads" / f"{terminal}.key"

    def terminal_upload_public_key(self, terminal: str) -> Path:
        """The X25519 public key of `terminal`, in the authority's bundle."""
        return self.bundle(self.authority_host) / "uploads" / f"{terminal}.pub"

    def require(self, *paths: Path) -> None:
        """FileNotFoundError naming the first missing file and how to make it."""
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing from keys folder {self.path}; create the folder with "
                    "`fl-crb keys --topology T --out DIR` (it makes every host's bundle)"
                )

    def read_manifest(self) -> dict:
        """keys.json: the plan the folder was made from, and every key's id."""
        self.require(self.manifest)
        return json.loads(self.manifest.read_text(encoding="utf-8"))

    def terminal_upload_public_keys(self) -> dict[str, bytes]:
        """Raw X25519 public key of every terminal in the folder (`UploadOpener`'s input)."""
        terminals = self.read_manifest()["terminals"]
        return {
            name: load_upload_public_key(self.terminal_upload_public_key(name))
            for name in terminals
        }


# -- files and certificates ------------------------------------------------------------------


def certificate_names(path: Path) -> list[str]:
    """The IP addresses and DNS names a certificate is valid for (its SANs)."""
    certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(name.value) for name in names]


def load_upload_public_key(path: Path | bytes) -> bytes:
    """The raw 32-byte X25519 public key in an uploads/*.pub or batches/*.pub file (or in
    that file's content)."""
    try:
        pem = path if isinstance(path, bytes) else Path(path).read_bytes()
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a PEM public key ({error})") from None
    if not isinstance(key, X25519PublicKey):
        raise ValueError(f"{path}: expected an X25519 public key, found {type(key).__name__}")
    return key.public_bytes_raw()


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _openssh(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _pkcs8(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _public_file(public_key, entry: BundleFile) -> bytes:
    if entry.purpose == "supernode-auth":  # what `flwr supernode register` reads, one line
        line = public_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return line + f" fl-crb-{entry.owner}\n".encode()
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


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


def _mkdir(folder: Path) -> None:
    """Create `folder` and its missing parents, each 0700."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700)


def _write_json(path: Path, data: dict) -> None:
    _write(path, (json.dumps(data, indent=1) + "\n").encode())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Create `path` (0600 if private, else 0644 less the umask) with `data`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
