"""The command lines, CLI config and environment of a deployment's Flower processes.

`FlowerCommands` turns a `LaunchConfig` into what `LocalFederation` (`launcher`) starts:
`flower-superlink`, `flower-supernode` (or `accelerators.fast_supernode` with a shorter
idle poll), the `accelerators.warm_executor` of a node's ClientApps, the `flwr` CLI's
config.toml, and the environment every Flower process gets (offline: no telemetry, no
update check, the SuperExec's task poll).

Accelerators: it decides once which of those the config asks for really run
(`FlowerCommands.accelerators`): none when `LaunchConfig.accelerators` is False or the
installed Flower is not the one they patch (`accelerators.check`); `off_notice` then says
which are off and why, and `flower_record` what ran.

Security (`Security`, from a folder made by `fl-crb keys`): with TLS, the SuperLink serves
its certificate and every SuperNode, ServerApp and CLI call checks it against the CA;
with node authentication, the SuperLink accepts only registered SuperNodes, and each node
signs its requests with its private key. The certificate must name every address
processes dial: `check_keys` says which are missing before anything starts. The keys
come from a whole keys folder (`keys.KeyFolder`, one machine) or from one host's bundle
(`BundleKeys`, the role commands: the authority's for the SuperLink, a node's for its
SuperNode).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from fl_crb.federation import accelerators
from fl_crb.federation.accelerators import FAST_SUPERNODE, WARM_EXECUTOR
from fl_crb.federation.deploy.launch_config import FederationError, LaunchConfig, NodeSpec
from fl_crb.federation.host_bundle import MANIFEST
from fl_crb.federation.keys import KeyFolder, certificate_names
from fl_crb.runtime.placement import LOOPBACK, Placement

OFFLINE_ENVIRONMENT = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
"""Environment every Flower process gets: no telemetry, no update check."""
BIND_ALL = ("0.0.0.0", "::")
"""Listen addresses that bind every interface (not themselves dialable)."""
FLOWER_IDLE_POLL_S = 3.0
"""The stock SuperNode's fixed wait after an empty pull (`time.sleep(3)` in flwr 1.42)."""


def flower_executable(name: str) -> str:
    """A Flower command from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FederationError(f"{name} not found: install fl-crb[federate] (flwr 1.42)")
    return found


def host_port(address: str, port: int) -> str:
    """host:port, with IPv6 addresses bracketed."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class BundleKeys:
    """The Flower key files of ONE host's bundle, under `KeyFolder`'s names: the
    authority's (the SuperLink's certificate and key, every node's public key to
    register) or a node's (its own SuperNode key). A file the bundle lacks is named by
    `require` as missing."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def ca_certificate(self) -> Path:
        return self.path / "ca.crt"

    @property
    def superlink_certificate(self) -> Path:
        return self.path / "superlink.crt"

    @property
    def superlink_key(self) -> Path:
        return self.path / "superlink.key"

    def supernode_key(self, host: str) -> Path:
        return self.path / "supernodes" / f"{host}.key"

    def supernode_public_key(self, host: str) -> Path:
        return self.path / "supernodes" / f"{host}.pub"

    def require(self, *paths: Path) -> None:
        """FileNotFoundError naming the first missing file and which bundle holds it."""
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing from the bundle {self.path}; the SuperLink's files are "
                    "in the authority's bundle, a SuperNode's key in its own host's: copy "
                    "DIR/<host>/ of `fl-crb keys` whole"
                )


def flower_keys(keys_dir: Path) -> KeyFolder | BundleKeys:
    """A keys folder, or one host's bundle (it holds bundle.json)."""
    path = Path(keys_dir).resolve()
    return BundleKeys(path) if (path / MANIFEST).is_file() else KeyFolder(path)


class FlowerCommands:
    """Command lines of one deployment's Flower processes, with its TLS and node auth."""

    def __init__(self, config: LaunchConfig, placement: Placement):
        self.config = config
        self.placement = placement
        security = config.security
        self.keys = flower_keys(security.keys_dir) if security else None
        """The keys folder (or one host's bundle), or None when everything runs `--insecure`."""
        self.tls = security is not None and security.tls
        """Whether connections to the SuperLink use TLS."""
        self.node_auth = security is not None and security.node_auth
        """Whether the SuperLink accepts registered SuperNodes only."""
        self.flower = accelerators.check()
        """The installed Flower, checked against the accelerators' `SUPPORTED_FLOWER`."""
        requested = (FAST_SUPERNODE,) if config.supernode_idle_poll_s is not None else ()
        requested += (WARM_EXECUTOR,) if config.warm_clientapps else ()
        allowed = config.accelerators and self.flower.available
        self.accelerators: tuple[str, ...] = requested if allowed else ()
        """The accelerators that run: those asked for, if allowed and supported."""
        self.off_notice = (
            accelerators.off_notice(requested, config.accelerators, self.flower)
            if requested and not allowed
            else ""
        )
        """One line saying which accelerators asked for are off and why ("" if none)."""

    def flower_record(self) -> dict[str, object]:
        """Which Flower path runs: version, accelerators, the SuperNodes' idle poll."""
        fast = FAST_SUPERNODE in self.accelerators
        return {
            "version": self.flower.version,
            "accelerators": list(self.accelerators),
            "accelerators_off": self.off_notice,
            "supernode_idle_poll_s": (
                self.config.supernode_idle_poll_s if fast else FLOWER_IDLE_POLL_S
            ),
            "superexec_poll_s": self.config.superexec_poll_s,
        }

    def check_keys(self, nodes: tuple[NodeSpec, ...]) -> None:
        """Every key file these nodes and the SuperLink read exists, and the certificate
        names every address they dial; ValueError naming what is missing."""
        keys = self.keys
        if keys is None:
            return
        if self.tls and self.config.superlink_address is not None:
            keys.require(keys.ca_certificate)  # the SuperLink's host checks its certificate
        elif self.tls:
            keys.require(keys.ca_certificate, keys.superlink_certificate, keys.superlink_key)
            names = certificate_names(keys.superlink_certificate)
            link = self.config.superlink_host
            dialed = {self.placement.address(link, link)} | {
                self.placement.address(link, node.placed_on) for node in nodes
            }
            listen = self.placement.listen_address(link)
            dialed.add(LOOPBACK if listen in BIND_ALL else listen)  # the SuperLink's SuperExec
            missing = sorted(dialed - set(names))
            if missing:
                raise ValueError(
                    f"{keys.superlink_certificate} is valid for {names} but the SuperLink is "
                    f"dialed at {missing}: recreate the keys with "
                    + " ".join(f"--san {address}" for address in missing)
                )
        if self.node_auth:
            remote = self.config.superlink_address is not None
            for node in nodes:  # the public key only where it is registered
                keys.require(keys.supernode_key(node.name))
                if not remote:
                    keys.require(keys.supernode_public_key(node.name))
            if not remote:
                keys.require(*(keys.supernode_public_key(n) for n in self.config.admitted_nodes))

    def superlink(self, listen: str, port: int, database: Path | None = None) -> list[str]:
        """`flower-superlink` bound to listen:port, its state in the SQLite file
        `database` (None: in memory)."""
        command = [flower_executable("flower-superlink")]
        if self.tls:
            keys = self.keys
            command += [
                "--ssl-ca-certfile",
                str(keys.ca_certificate),
                "--ssl-certfile",
                str(keys.superlink_certificate),
                "--ssl-keyfile",
                str(keys.superlink_key),
            ]
        else:
            command.append("--insecure")
        if self.node_auth:
            command.append("--enable-supernode-auth")
        return [
            *command,
            "--host",
            listen,
            "--port",
            str(port),
            "--disable-runtime-dependency-installation",
            *(["--database", str(database)] if database is not None else []),
        ]

    def supernode(self, node: NodeSpec, fleet: str, runtime_port: int) -> list[str]:
        """`node`'s SuperNode dialing the Fleet API at `fleet`, its Runtime API on
        127.0.0.1:`runtime_port` of its host, its node config from `node`."""
        if self.tls:
            arguments = ["--root-certificates", str(self.keys.ca_certificate)]
        else:
            arguments = ["--insecure"]
        if self.node_auth:
            arguments += ["--auth-supernode-private-key", str(self.keys.supernode_key(node.name))]
        arguments += [
            "--superlink",
            fleet,
            "--host",
            LOOPBACK,
            "--port",
            str(runtime_port),
            "--node-config",
            node.node_config_argument(),
        ]
        if WARM_EXECUTOR in self.accelerators:
            arguments += ["--isolation", "process"]  # the warm executor serves its tasks
        if FAST_SUPERNODE not in self.accelerators:
            return [flower_executable("flower-supernode"), *arguments]
        return [
            sys.executable,
            "-m",
            "fl_crb.federation.accelerators.fast_supernode",
            "--idle-poll-s",
            str(self.config.supernode_idle_poll_s),
            "--",
            *arguments,
        ]

    @staticmethod
    def warm_executor(runtime_port: int, parent_pid: int) -> list[str]:
        """The `warm_executor` serving the ClientApps of the SuperNode `parent_pid`."""
        return [
            sys.executable,
            "-m",
            "fl_crb.federation.accelerators.warm_executor",
            "--insecure",  # the node's own Runtime API, on its host's loopback
            "--runtime-api-address",
            f"{LOOPBACK}:{runtime_port}",
            "--parent-pid",
            str(parent_pid),
        ]

    def cli_config(self, superlink_port: int) -> str:
        """The `flwr` CLI's config.toml: the SuperLink as its "local" connection."""
        link = self.config.superlink_host
        address = host_port(self.placement.address(link, link), superlink_port)
        security = (
            f"root-certificates = {json.dumps(str(self.keys.ca_certificate))}\n"
            if self.tls
            else "insecure = true\n"
        )
        return (
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{address}"\n'
            + security
        )

    def environment(self, flwr_home: Path) -> dict[str, str]:
        """This process's environment, offline, with FLWR_HOME and the SuperExec poll."""
        # Flower spawns flower-superexec and flwr-clientapp by name: put ours first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {
            **os.environ,
            **OFFLINE_ENVIRONMENT,
            "PATH": path,
            "FLWR_HOME": str(flwr_home),
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(self.config.superexec_poll_s),
        }
