"""A host's key bundle: exactly the keys its role needs, checked and loaded at start.

`fl-crb keys` (`keys.create_keys`) writes one bundle per host of a topology; each party
loads its own with `HostBundle.load(path, role=...)` and builds its sealers, openers,
signers and verifiers from the typed keys it returns (`TerminalKeys`, `EdgeKeys`,
`AuthorityKeys`). A path means the same key in every bundle that holds it:

    path                    what                                          bundle of
    bundle.json             manifest: host, role, peers, every file's     every host
                            kind, owner, purpose, algorithm and key id
    ca.crt                  the CA certificate (checks the SuperLink)     every host
    superlink.crt, .key     the SuperLink's TLS certificate and key       authority
    supernodes/<h>.key      SuperNode authentication key of host h        h
    supernodes/<h>.pub      its public key, to register                   authority
    uploads/authority.key   the authority's X25519 key: opens uploads,    authority
                            seals batches, MACs acknowledgements
    uploads/authority.pub   its public key                                every host
    uploads/<t>.key, .pub   terminal t's X25519 key: seals uploads,       t; .pub: authority
                            checks acknowledgements
    batches/<e>.key, .pub   edge e's X25519 key: opens its batches        e; .pub: authority
    weights/<e>.key, .pub   edge e's Ed25519 key: signs its weights       e; .pub: the
                                                                          terminals e manages
                                                                          and the authority

So every private key lies in exactly one bundle, and the CA's private key in none. A key
id is the first 16 hex digits of SHA-256 over the public key's DER SubjectPublicKeyInfo:
the same in every bundle and every run. `load` refuses, naming the file and the fix, a
bundle of another role or host, a file list other than the role's, a missing file, a
private key readable by group or others, a key whose id differs from bundle.json's, and
any other `*.key` file in the folder.
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fl_crb.federation.crypto import UploadOpener, UploadSealer
from fl_crb.federation.message_auth import (
    AckAuthenticator,
    AckVerifier,
    BatchOpener,
    BatchSealer,
    WeightsSigner,
    WeightsVerifier,
)

Role = Literal["authority", "edge", "terminal"]
ROLES: tuple[Role, ...] = ("authority", "edge", "terminal")
MANIFEST = "bundle.json"
FORMAT = 1
"""Version of bundle.json's format."""
REMAKE = "re-make the bundles with `fl-crb keys --topology T --out DIR --force`"


class BundleError(ValueError):
    """A host bundle is incomplete, wrong for its role, or unsafe; names the file and fix."""


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle, as bundle.json lists it (with its key id)."""

    path: str
    """Relative to the bundle (the same path in every bundle that holds it)."""
    kind: Literal["private-key", "public-key", "certificate"]
    owner: str
    """The host whose key it is ("ca" for the CA certificate)."""
    purpose: str
    """"ca", "tls", "supernode-auth", "sealing", "batch-opening" or "weights-signing"."""
    algorithm: str

    def manifest_entry(self, key_id: str) -> dict:
        """How bundle.json records this file (under its path)."""
        entry = asdict(self)
        del entry["path"]
        return {**entry, "key_id": key_id}


_PURPOSES = {  # purpose → (folder, algorithm)
    "supernode-auth": ("supernodes", "ECDSA P-384"),
    "sealing": ("uploads", "X25519"),
    "batch-opening": ("batches", "X25519"),
    "weights-signing": ("weights", "Ed25519"),
}


def key_file(purpose: str, owner: str, private: bool, stem: str | None = None) -> BundleFile:
    """The file of `owner`'s key for `purpose` (named `stem`, by default the owner)."""
    folder, algorithm = _PURPOSES[purpose]
    suffix, kind = (".key", "private-key") if private else (".pub", "public-key")
    return BundleFile(f"{folder}/{stem or owner}{suffix}", kind, owner, purpose, algorithm)


def bundle_files(
    role: Role,
    host: str,
    authority_host: str,
    managing_edge: str = "",
    supernodes: tuple[str, ...] = (),
    terminals: tuple[str, ...] = (),
    edges: tuple[str, ...] = (),
) -> list[BundleFile]:
    """The exact files of a bundle, bundle.json aside (the table above).

    A terminal's bundle needs its `managing_edge`; the authority's, every SuperNode,
    terminal and edge.
    """
    files = [BundleFile("ca.crt", "certificate", "ca", "ca", "ECDSA P-256")]
    authority_public = key_file("sealing", authority_host, False, "authority")
    if role == "authority":
        return [
            *files,
            BundleFile("superlink.crt", "certificate", host, "tls", "ECDSA P-256"),
            BundleFile("superlink.key", "private-key", host, "tls", "ECDSA P-256"),
            key_file("sealing", host, True, "authority"),
            authority_public,
            *(key_file("supernode-auth", node, False) for node in supernodes),
            *(key_file("sealing", terminal, False) for terminal in terminals),
            *(key_file("batch-opening", edge, False) for edge in edges),
            *(key_file("weights-signing", edge, False) for edge in edges),
        ]
    own = [key_file("supernode-auth", host, True)]
    if role == "edge":
        own += [key_file("batch-opening", host, True), key_file("weights-signing", host, True)]
        return [*files, *own, authority_public]
    own.append(key_file("sealing", host, True))
    return [*files, *own, authority_public, key_file("weights-signing", managing_edge, False)]


def _a(role: str) -> str:
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def key_id(public_key) -> str:
    """A key's id in every bundle and run: SHA-256 of its DER SubjectPublicKeyInfo, 16 hex."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


# -- the keys of each role, and what they build ---------------------------------------------


@dataclass(frozen=True)
class TerminalKeys:
    """What a terminal holds: its sealing key, the authority's key, its edge's weights key."""

    host: str
    upload_key: X25519PrivateKey
    """Seals uploads for the authority and derives the acknowledgements' MAC key."""
    authority_public_key: bytes
    """The authority's raw X25519 public key."""
    edge: str
    """The edge that manages this terminal: only its weights are accepted."""
    edge_weights_public_key: bytes
    """That edge's raw Ed25519 public key."""
    supernode_key: Path
    """`flower-supernode --auth-supernode-private-key`."""

    def upload_sealer(self, run_id: bytes, next_sequence: int = 1) -> UploadSealer:
        """Seals this terminal's uploads in run `run_id`."""
        return UploadSealer(
            self.upload_key, self.host, self.authority_public_key, run_id, next_sequence
        )

    def weights_verifier(self, run_id: bytes, latest_version: int = -1) -> WeightsVerifier:
        """Accepts the managing edge's signed weights, each version newer."""
        return WeightsVerifier(self.edge, self.edge_weights_public_key, run_id, latest_version)

    def ack_verifier(
        self, run_id: bytes, latest_sequence: int = 0, latest_ack: int = 0
    ) -> AckVerifier:
        """Accepts the authority's acknowledgements to this terminal."""
        return AckVerifier(
            self.upload_key,
            self.host,
            self.authority_public_key,
            run_id,
            latest_sequence,
            latest_ack,
        )


@dataclass(frozen=True)
class EdgeKeys:
    """What an edge holds: its batch key, its weights-signing key, the authority's key."""

    host: str
    batch_key: X25519PrivateKey
    """Opens the batches the authority seals for this edge."""
    weights_key: Ed25519PrivateKey
    """Signs this edge's weights."""
    authority_public_key: bytes
    """The authority's raw X25519 public key (the batches' sender)."""
    supernode_key: Path
    """`flower-supernode --auth-supernode-private-key`."""

    def batch_opener(self, run_id: bytes, latest_sequence: int = 0) -> BatchOpener:
        """Opens the batches sealed for this edge in run `run_id`."""
        return BatchOpener(
            self.batch_key, self.host, self.authority_public_key, run_id, latest_sequence
        )

    def weights_signer(self, run_id: bytes) -> WeightsSigner:
        """Signs this edge's weights in run `run_id`."""
        return WeightsSigner(self.weights_key, self.host, run_id)


@dataclass(frozen=True)
class AuthorityKeys:
    """What the authority's host holds: its X25519 key, its peers' public keys, TLS."""

    host: str
    authority_key: X25519PrivateKey
    """Opens uploads, seals batches, authenticates acknowledgements."""
    terminal_public_keys: dict[str, bytes]
    """Terminal → raw X25519 public key."""
    edge_public_keys: dict[str, bytes]
    """Edge → raw X25519 public key (the recipient of its batches)."""
    edge_weights_public_keys: dict[str, bytes]
    """Edge → raw Ed25519 public key (checks the weights it relays to terminals)."""
    superlink_certificate: Path
    """`flower-superlink --ssl-certfile`."""
    superlink_key: Path
    """`flower-superlink --ssl-keyfile`."""
    supernode_public_keys: dict[str, Path]
    """SuperNode host → its public key file, for `flwr supernode register`."""

    def upload_opener(self, run_id: bytes, sequences: dict[str, int] | None = None) -> UploadOpener:
        """Opens every terminal's uploads in run `run_id`."""
        return UploadOpener(self.authority_key, run_id, self.terminal_public_keys, sequences)

    def batch_sealer(
        self, run_id: bytes, next_sequence: dict[str, int] | None = None
    ) -> BatchSealer:
        """Seals batches for every edge in run `run_id`."""
        return BatchSealer(self.authority_key, run_id, self.edge_public_keys, next_sequence)

    def weights_verifier(
        self, edge: str, run_id: bytes, latest_version: int = -1
    ) -> WeightsVerifier:
        """Checks `edge`'s signed weights before they are relayed (newer versions only)."""
        return WeightsVerifier(edge, self.edge_weights_public_keys[edge], run_id, latest_version)

    def ack_authenticator(
        self, run_id: bytes, next_sequence: dict[str, int] | None = None
    ) -> AckAuthenticator:
        """Authenticates acknowledgements to every terminal in run `run_id`."""
        return AckAuthenticator(
            self.authority_key, run_id, self.terminal_public_keys, next_sequence
        )


# -- loading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HostBundle:
    """One host's checked bundle: `HostBundle.load(path, role=...)`."""

    path: Path
    host: str
    role: Role
    files: tuple[BundleFile, ...]
    """Exactly the files its role needs (bundle.json aside)."""
    key_ids: dict[str, str]
    """Bundle path → key id."""
    keys: TerminalKeys | EdgeKeys | AuthorityKeys = field(repr=False)

    @property
    def ca_certificate(self) -> Path:
        """The CA certificate: `--root-certificates`, `--ssl-ca-certfile`."""
        return self.path / "ca.crt"

    def terminal(self) -> TerminalKeys:
        """The keys of a terminal's bundle; BundleError for another role."""
        return self._narrow("terminal", TerminalKeys)

    def edge(self) -> EdgeKeys:
        """The keys of an edge's bundle; BundleError for another role."""
        return self._narrow("edge", EdgeKeys)

    def authority(self) -> AuthorityKeys:
        """The keys of the authority's bundle; BundleError for another role."""
        return self._narrow("authority", AuthorityKeys)

    def _narrow(self, role: str, kind: type):
        if not isinstance(self.keys, kind):
            raise BundleError(
                f"{self.path}: the bundle of {self.role} {self.host!r}, not {_a(role)}'s"
            )
        return self.keys

    @classmethod
    def load(
        cls, path: str | Path, role: Role | None = None, host: str | None = None
    ) -> HostBundle:
        """Check and load the bundle in `path`; BundleError naming the file and the fix.

        `role` and `host`, when given, are what the caller expects the bundle to be.
        """
        path = Path(path)
        manifest = _read_manifest(path)
        if role is not None and manifest["role"] != role:
            raise BundleError(
                f"{path / MANIFEST}: the bundle of {manifest['role']} {manifest['host']!r}, "
                f"but {_a(role)}'s is needed: copy the {role}'s bundle (DIR/<its host>/ of "
                "`fl-crb keys`) here"
            )
        if host is not None and manifest["host"] != host:
            raise BundleError(
                f"{path / MANIFEST}: the bundle of {manifest['host']!r}, but this is {host!r}: "
                f"copy DIR/{host}/ of `fl-crb keys` here"
            )
        files, key_ids = _check_files(path, manifest)
        loaded = {f.path: _read_key(path / f.path, f, key_ids[f.path]) for f in files}
        keys = _role_keys(path, manifest, loaded)
        return cls(path, manifest["host"], manifest["role"], tuple(files), key_ids, keys)


def _read_manifest(path: Path) -> dict:
    """bundle.json with its fields' types checked."""
    file = path / MANIFEST
    if not file.is_file():
        raise BundleError(
            f"{file}: missing, so {path} is not a host bundle; make the bundles with "
            "`fl-crb keys --topology T --out DIR` and copy DIR/<this host>/ here"
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{file}: not valid JSON ({error}); {REMAKE}") from None
    fields = {"format": int, "host": str, "role": str, "authority_host": str, "files": dict}
    if manifest.get("role") == "terminal":
        fields["managing_edge"] = str
    for name, kind in fields.items():
        if not isinstance(manifest.get(name), kind):
            raise BundleError(f"{file}: field {name!r} missing or not a {kind.__name__}; {REMAKE}")
    if manifest["format"] != FORMAT or manifest["role"] not in ROLES:
        raise BundleError(
            f"{file}: format {manifest['format']}, role {manifest['role']!r}; expected format "
            f"{FORMAT} and a role in {ROLES}; {REMAKE}"
        )
    for name in ("supernodes", "terminals", "edges") if manifest["role"] == "authority" else ():
        names = manifest.get(name)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BundleError(f"{file}: field {name!r} is not a list of host names; {REMAKE}")
    return manifest


def _check_files(path: Path, manifest: dict) -> tuple[list[BundleFile], dict[str, str]]:
    """The role's exact file list, each present and private ones owner-only; no stray key."""
    peers = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in manifest.items()
        if name in ("supernodes", "terminals", "edges", "managing_edge")
    }
    files = bundle_files(manifest["role"], manifest["host"], manifest["authority_host"], **peers)
    listed, expected = manifest["files"], [f.path for f in files]
    if set(listed) != set(expected):
        raise BundleError(
            f"{path / MANIFEST}: {_a(manifest['role'])}'s bundle holds {expected}; this one also "
            f"lists {sorted(set(listed) - set(expected))} and lacks "
            f"{sorted(set(expected) - set(listed))}; {REMAKE}"
        )
    key_ids = {}
    for entry in files:
        file, recorded = path / entry.path, listed[entry.path]
        key = recorded.get("key_id") if isinstance(recorded, dict) else None
        if not isinstance(key, str) or recorded != entry.manifest_entry(key):
            raise BundleError(
                f"{path / MANIFEST}: entry {entry.path!r} is {recorded!r}, expected "
                f"{entry.manifest_entry('<key id>')}; {REMAKE}"
            )
        if not file.is_file():
            raise BundleError(
                f"{file}: missing from the bundle of {manifest['host']!r}; copy the whole "
                f"bundle again from DIR/{manifest['host']}/ (scp -rp keeps the modes)"
            )
        mode = stat.S_IMODE(file.stat().st_mode)
        if entry.kind == "private-key" and mode & 0o077:
            raise BundleError(
                f"{file}: private key readable by group or others (mode {mode:04o}); "
                f"fix: chmod 600 {file}"
            )
        key_ids[entry.path] = key
    stray = sorted(p for p in path.rglob("*.key") if p.relative_to(path).as_posix() not in listed)
    if stray:
        raise BundleError(
            f"{stray[0]}: a private key bundle.json does not list; {_a(manifest['role'])}'s bundle "
            "holds no other key: delete it"
        )
    return files, key_ids


def _read_key(file: Path, entry: BundleFile, recorded_id: str):
    """The key (or certificate) in `file`, checked against bundle.json's key id."""
    data = file.read_bytes()
    ssh = entry.purpose == "supernode-auth"
    try:
        if entry.kind == "certificate":
            key = x509.load_pem_x509_certificate(data)
        elif entry.kind == "private-key":
            load = serialization.load_ssh_private_key if ssh else serialization.load_pem_private_key
            key = load(data, password=None)
        else:
            key = (serialization.load_ssh_public_key if ssh else serialization.load_pem_public_key)(
                data
            )
    except (ValueError, TypeError) as error:
        raise BundleError(
            f"{file}: not a readable {entry.algorithm} {entry.kind} ({error})"
        ) from None
    public = key if entry.kind == "public-key" else key.public_key()
    kinds = {"X25519": X25519PublicKey, "Ed25519": Ed25519PublicKey}
    if entry.algorithm in kinds and not isinstance(public, kinds[entry.algorithm]):
        raise BundleError(
            f"{file}: expected an {entry.algorithm} key, found {type(public).__name__}"
        )
    if key_id(public) != recorded_id:
        raise BundleError(
            f"{file}: key id {key_id(public)}, but bundle.json records {recorded_id}: the file "
            f"was replaced; copy the bundle again, or {REMAKE}"
        )
    return key


def _role_keys(path: Path, manifest: dict, loaded: dict):
    """The typed keys of the bundle's role."""
    host = manifest["host"]
    authority_pub = loaded["uploads/authority.pub"].public_bytes_raw()
    if manifest["role"] == "terminal":
        edge = manifest["managing_edge"]
        return TerminalKeys(
            host,
            loaded[f"uploads/{host}.key"],
            authority_pub,
            edge,
            loaded[f"weights/{edge}.pub"].public_bytes_raw(),
            path / f"supernodes/{host}.key",
        )
    if manifest["role"] == "edge":
        return EdgeKeys(
            host,
            loaded[f"batches/{host}.key"],
            loaded[f"weights/{host}.key"],
            authority_pub,
            path / f"supernodes/{host}.key",
        )
    return AuthorityKeys(
        host,
        loaded["uploads/authority.key"],
        {t: loaded[f"uploads/{t}.pub"].public_bytes_raw() for t in manifest["terminals"]},
        {e: loaded[f"batches/{e}.pub"].public_bytes_raw() for e in manifest["edges"]},
        {e: loaded[f"weights/{e}.pub"].public_bytes_raw() for e in manifest["edges"]},
        path / "superlink.crt",
        path / "superlink.key",
        {n: path / f"supernodes/{n}.pub" for n in manifest["supernodes"]},
    )
