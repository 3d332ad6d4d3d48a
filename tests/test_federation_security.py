"""TLS, SuperNode authentication and `fl-crb keys`, with real Flower processes."""

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.cli.supernode.register import try_load_public_key
from flwr.supercore.primitives.asymmetric import public_key_to_bytes

from fl_crb.cli import main
from fl_crb.federation.crypto import UploadOpener, UploadSealer, load_private_key
from fl_crb.federation.deploy.launch_config import FederationError, LaunchConfig, NodeSpec, Security
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.processes import ProcessSet, alive, descendants, run_once
from fl_crb.federation.edge import WeightsReceipts
from fl_crb.federation.keys import KeyFolder, certificate_names, load_upload_public_key
from fl_crb.federation.metering.wire_meter import TLS_LABEL

TINY = Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml"
NODES = ("edge1", "edge2", "t1", "t2", "t3", "t4")


def _make_keys(folder: Path, *extra: str) -> int:
    return main(["keys", "--topology", str(TINY), "--out", str(folder), *extra])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys") / "keys"
    assert _make_keys(folder) == 0
    return folder


def test_keys_command_writes_every_hosts_keys_loadable_with_private_ones_0600(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert _make_keys(folder, "--san", "10.0.0.1", "--san", "authority.example.org") == 0
    keys = KeyFolder(folder)
    printed = capsys.readouterr().out
    assert "t1 (terminal): ca.crt supernodes/t1.key uploads/t1.key uploads/authority.pub" in printed

    private = [keys.ca_key, keys.superlink_key, keys.authority_upload_key]
    private += [keys.supernode_key(host) for host in NODES]
    private += [keys.terminal_upload_key(t) for t in ("t1", "t2", "t3", "t4")]
    assert {path: _mode(path) for path in private} == dict.fromkeys(private, 0o600)
    assert _mode(folder) == 0o700

    ca = x509.load_pem_x509_certificate(keys.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(keys.superlink_certificate.read_bytes())
    server.verify_directly_issued_by(ca)
    assert certificate_names(keys.superlink_certificate) == [
        "127.0.0.1",
        "localhost",
        "10.0.0.1",
        "authority.example.org",
    ]
    for host in NODES:  # what flower-supernode and `flwr supernode register` read
        node_key = load_ssh_private_key(keys.supernode_key(host).read_bytes(), None)
        assert isinstance(node_key, ec.EllipticCurvePrivateKey)
        assert node_key.curve.name == "secp384r1"
        registered = try_load_public_key(keys.supernode_public_key(host))
        assert registered == public_key_to_bytes(node_key.public_key())

    opener = UploadOpener(
        load_private_key(keys.authority_upload_key), b"r" * 16, keys.terminal_upload_public_keys()
    )
    sealer = UploadSealer(
        load_private_key(keys.terminal_upload_key("t3")),
        "t3",
        load_upload_public_key(keys.authority_upload_public_key),
        b"r" * 16,
    )
    assert opener.open(sealer.seal(b"trajectory")).terminal_id == "t3"
    assert keys.read_manifest()["supernodes"]["edge2"] == "edge"


def test_keys_command_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    folder = tmp_path / "keys"
    assert _make_keys(folder) == 0
    keys = KeyFolder(folder)
    before = keys.ca_key.read_bytes(), keys.supernode_key("t1").read_bytes()
    capsys.readouterr()

    assert _make_keys(folder) == 2
    assert "keys exist already" in capsys.readouterr().err
    assert (keys.ca_key.read_bytes(), keys.supernode_key("t1").read_bytes()) == before

    assert _make_keys(folder, "--force") == 0
    assert keys.ca_key.read_bytes() != before[0]
    assert keys.supernode_key("t1").read_bytes() != before[1]
    assert _mode(keys.ca_key) == _mode(keys.supernode_key("t1")) == 0o600


def test_keys_command_names_a_bad_san_and_writes_nothing(tmp_path, capsys):
    assert _make_keys(tmp_path / "keys", "--san", "not a host") == 2
    assert (
        "SAN 'not a host' is neither an IP address nor a DNS host name" in capsys.readouterr().err
    )
    assert not (tmp_path / "keys").exists()


def test_security_settings_are_checked_before_anything_starts(tmp_path, keys_dir):
    with pytest.raises(ValueError, match="authenticates SuperNodes only over TLS"):
        Security(keys_dir, tls=False, node_auth=True)
    nodes = (NodeSpec("t1", "terminal"),)
    with pytest.raises(FileNotFoundError, match=r"ca\.crt: missing .*`fl-crb keys"):
        LocalFederation(LaunchConfig(tmp_path / "run", nodes, security=Security(tmp_path)))
    elsewhere = LaunchConfig(tmp_path / "run", nodes, host="127.0.0.2", security=Security(keys_dir))
    with pytest.raises(ValueError, match=r"dialed at \['127\.0\.0\.2'\].*--san 127\.0\.0\.2"):
        LocalFederation(elsewhere)
    unknown = (NodeSpec("t9", "terminal"),)
    with pytest.raises(FileNotFoundError, match=r"supernodes/t9\.key: missing"):
        LocalFederation(LaunchConfig(tmp_path / "run", unknown, security=Security(keys_dir)))


class EnvPlacement:
    """A real placement: every process starts through `env`, tagged with its host."""

    label = "env-tagged"

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["env", f"FL_CRB_TEST_HOST={host}", *argv]

    def listen_address(self, host: str) -> str:
        return "127.0.0.1"

    def address(self, host: str, peer: str | None = None) -> str:
        return "127.0.0.1"


def _placed_on(pid: int) -> str:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next(e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"FL_CRB_TEST_HOST="))


def test_tls_and_node_auth_admit_registered_nodes_and_refuse_an_unregistered_one(
    tmp_path, keys_dir
):
    nodes = (NodeSpec("t1", "terminal", host="pi-1"),)  # one node keeps the test short
    config = LaunchConfig(
        tmp_path,
        nodes,
        supernode_idle_poll_s=0.05,
        warm_clientapps=True,
        security=Security(keys_dir),
        placement=EnvPlacement(),
        superlink_host="cloud",
    )
    keys = KeyFolder(keys_dir)
    with LocalFederation(config) as federation:
        placed = {
            name: _placed_on(federation.processes.pid(name)) for name in ("superlink", "meter")
        }
        placed |= {
            node.name: _placed_on(federation.processes.pid(f"node-{node.name}")) for node in nodes
        }
        trusted = ssl.create_default_context(cafile=str(keys.ca_certificate))
        port = federation.superlink_port
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            trusted.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
        untrusting = ssl.create_default_context()  # the system's CAs do not know ours
        with (
            socket.create_connection(("127.0.0.1", port)) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            untrusting.wrap_socket(raw, server_hostname="127.0.0.1")

        result = federation.probe("0:1000", rounds=1, timeout_s=120)
        wire = federation.meter.snapshot()  # the meter process on "cloud" counted TLS bytes
        node_ids = dict(federation.node_ids)
        with pytest.raises(FederationError, match="node-t2 exited with status 1"):
            federation.start_node(NodeSpec("t2", "terminal"), register=False)
        started = [federation.processes.pid(name) for name in federation.processes.names()]
        flower = set(started) | {child for pid in started for child in descendants(pid)}
    assert not [pid for pid in flower if alive(pid)], "processes outlived stop()"
    assert result["run"].completed
    assert result["nodes"] == {str(node_ids["t1"]): {"role": "terminal", "name": "t1"}}
    assert placed == {"superlink": "cloud", "meter": "cloud", "t1": "pi-1"}
    assert set(wire) == {"t1"} and set(wire["t1"]) == {TLS_LABEL}  # opaque: TLS
    assert wire["t1"][TLS_LABEL]["down_bytes"] > 1000
    described = json.loads((tmp_path / "nodes.json").read_text())
    assert described["t1"]["registered_node_id"] == node_ids["t1"]
    cli = tomllib.loads((tmp_path / "cli" / "config.toml").read_text())["superlink"]["local"]
    assert cli == {
        "address": f"127.0.0.1:{federation.superlink_port}",
        "root-certificates": str(keys.ca_certificate.resolve()),
    }

    refused = (tmp_path / "logs" / "node-t2.log").read_text()
    assert "Exit Code: 305" in refused and "Failed to activate SuperNode" in refused
    superlink_log = (tmp_path / "logs" / "superlink.log").read_text()
    assert "No SuperNode found with the given public key" in superlink_log
    assert "Uvicorn running on https://127.0.0.1" in superlink_log


def test_run_once_kills_the_whole_group_of_a_command_that_times_out(tmp_path):
    log = tmp_path / "out.log"
    command = ["sh", "-c", "sleep 30 & echo $!; wait"]
    with pytest.raises(subprocess.TimeoutExpired):  # 3 s: sh starts slowly on a loaded machine
        run_once(command, {"PATH": "/usr/bin:/bin"}, timeout_s=3, log_path=log)
    background = int(log.read_text().split()[0])
    assert not alive(background)
    done = run_once(["sh", "-c", "echo out; echo err >&2; exit 3"], {"PATH": "/usr/bin:/bin"}, 5)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


class NamespacePlacement:
    """This machine is the authority; every other host is a network namespace behind a
    bridge, as if on a machine of its own (needs root)."""

    label = "netns"

    def __init__(self, prefix: str, hosts: list[str]):
        self.prefix = prefix
        self.addresses = {host: f"192.168.231.{i}" for i, host in enumerate(hosts, start=2)}
        self.authority_address = "192.168.231.1"
        self.holders: dict[str, subprocess.Popen] = {}

    def command(self, host: str, argv: list[str]) -> list[str]:
        """As `MininetPlacement`: `mnexec -a PID` of a process holding the namespace."""
        if host == "cloud":
            return list(argv)
        return ["mnexec", "-a", str(self.holders[host].pid), *argv]

    def listen_address(self, host: str) -> str:
        return self.authority_address if host == "cloud" else "127.0.0.1"

    def address(self, host: str, peer: str | None = None) -> str:
        return self.authority_address if host == "cloud" else self.addresses[host]

    def up(self) -> None:
        bridge = f"{self.prefix}br"
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{self.authority_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for index, (host, address) in enumerate(self.addresses.items()):
            namespace, outside = f"{self.prefix}-{host}", f"{self.prefix}v{index}"
            _ip("netns", "add", namespace)
            _ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace)
            _ip("link", "set", outside, "master", bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            holder = ["ip", "netns", "exec", namespace, "sleep", "infinity"]
            self.holders[host] = subprocess.Popen(holder, start_new_session=True)

    def down(self) -> None:
        for holder in self.holders.values():
            holder.kill()
            holder.wait()
        for index, host in enumerate(self.addresses):
            subprocess.run(["ip", "netns", "del", f"{self.prefix}-{host}"], check=False)
            subprocess.run(["ip", "link", "del", f"{self.prefix}v{index}"], check=False)
        subprocess.run(["ip", "link", "del", f"{self.prefix}br"], check=False)


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True)


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mnexec") is None, reason="needs root and mnexec"
)
def test_nodes_in_their_own_network_namespaces_reach_the_superlink_over_tls(tmp_path):
    """The deployment guide's setting, one machine standing for three: placement, TLS
    with the authority's address in the certificate, node authentication."""
    keys_dir = tmp_path / "keys"
    assert _make_keys(keys_dir, "--san", "192.168.231.1") == 0
    placement = NamespacePlacement(f"fct{os.getpid() % 10000}", ["edge1", "t1"])
    nodes = (NodeSpec("edge1", "edge"), NodeSpec("t1", "terminal"))
    config = LaunchConfig(
        tmp_path / "run",
        nodes,
        supernode_idle_poll_s=0.05,
        warm_clientapps=True,
        security=Security(keys_dir),
        placement=placement,
    )
    placement.up()
    try:
        with LocalFederation(config) as federation:
            namespaces = {
                name: os.readlink(f"/proc/{federation.processes.pid(name)}/ns/net")
                for name in ("superlink", "node-edge1", "node-t1")
            }
            result = federation.probe("0:1000", rounds=1, timeout_s=180)
            wire = federation.meter.snapshot()
            started = [federation.processes.pid(name) for name in federation.processes.names()]
            flower = set(started) | {child for pid in started for child in descendants(pid)}
    finally:
        placement.down()
    assert not [pid for pid in flower if alive(pid)], "processes outlived stop()"
    assert result["run"].completed and len(result["nodes"]) == 2
    assert set(wire) == {"edge1", "t1"}  # every node's traffic crossed the bridge, as TLS
    assert namespaces["superlink"] == os.readlink("/proc/self/ns/net")
    assert len({namespaces["superlink"], namespaces["node-edge1"], namespaces["node-t1"]}) == 3
    described = json.loads((tmp_path / "run" / "nodes.json").read_text())
    assert {described[n]["fleet_address"].split(":")[0] for n in ("edge1", "t1")} == {
        "192.168.231.1"
    }


def test_a_command_that_makes_its_own_session_stays_ours_and_is_stopped(tmp_path):
    """`mnexec -d` and `setsid` fork away from a caller that made them a group leader."""
    processes = ProcessSet()
    env = {"PATH": "/usr/bin:/bin"}
    record = ["setsid", "sh", "-c", f"echo $$ > {tmp_path / 'away.pid'}; exec sleep 30"]
    processes.spawn("forks", record, tmp_path, env, tmp_path / "a.log")
    processes.spawn(
        "stays", ["setsid", "sleep", "30"], tmp_path, env, tmp_path / "b.log", new_session=False
    )
    time.sleep(0.5)
    stays = processes.pid("stays")
    assert processes.exit_status("forks") == 0  # what a new session would do to mnexec -d
    assert processes.exit_status("stays") is None and os.getpgid(stays) == stays
    processes.stop(["forks", "stays"], timeout_s=5)
    assert not alive(stays)
    away = int((tmp_path / "away.pid").read_text())
    assert alive(away)  # beyond our reach: the reason for new_session=False
    os.kill(away, signal.SIGKILL)


# -- the learning plane authenticated end to end, in real federated runs ---------------------


def _federated(out: Path, duration_s: float, **extra):
    """tiny (edge1 manages t1 and t3, edge2 t2 and t4) at 5 Mbit/s per terminal, 1 s
    rounds, training from 4 pooled trajectories: batches flow from about round 3."""
    from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
    from fl_crb.learn.method_config import MethodConfig
    from fl_crb.runtime.config import RunTarget

    target = RunTarget(str(TINY), duration_s, arrival_rate_override_bps=5e6)
    return FederatedRunConfig(
        federated_parties(target, str(out)),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        **extra,
    )


def _run(config) -> dict:
    import asyncio

    from fl_crb.federation.deploy.federated_run import run_federated

    return asyncio.run(run_federated(config))


def _nothing_lost(out: Path, federation: dict) -> None:
    """Every genuine upload is in the pool once, and every outbox was drained."""
    rejected = sum(federation["uploads_rejected"].values())
    assert federation["uploads_accepted"] == federation["uploads_posted"] - rejected > 0
    for outbox in (out / "mailboxes").glob("*/outbox"):
        assert not list(outbox.iterdir()), f"{outbox} still holds uploads"


def test_transit_fault_specs_are_checked():
    from fl_crb.federation.transit_faults import parse_transit_faults

    faults = parse_transit_faults("weights-tamper@3, ack-replay@1")
    assert [(f.name, f.round) for f in faults] == [("weights-tamper", 3), ("ack-replay", 1)]
    for bad in ("weights-flip@3", "upload-tamper@1", "ack-forge@0", "batch-forge"):
        with pytest.raises(ValueError, match=rf"test transit fault '{bad}': expected MESSAGE"):
            parse_transit_faults(bad)


def test_the_superlink_certificate_names_the_cloud_address_each_host_dials():
    from fl_crb.federation.deploy.federated_run import superlink_sans
    from fl_crb.runtime.placement import Loopback

    assert superlink_sans(Loopback(), "cloud", ["edge1", "t1"]) == ["127.0.0.1"]

    class Emulated:  # as MininetPlacement: bind every interface, reached on two nets
        def listen_address(self, host: str) -> str:
            return "0.0.0.0"

        def address(self, host: str, peer: str | None = None) -> str:
            return {"edge1": "10.0.0.1", "cloud": "10.0.0.1"}.get(peer, "10.1.0.1")

    assert superlink_sans(Emulated(), "cloud", ["edge1", "t1"]) == [
        "10.0.0.1",
        "10.1.0.1",
        "127.0.0.1",
    ]


TRANSIT_FAULTS = ",".join(
    f"{message}-{how}@3"
    for message in ("weights", "batch", "ack")
    for how in ("tamper", "forge", "replay")
)


def test_weights_batches_and_acks_altered_forged_or_replayed_in_transit_are_refused(tmp_path):
    """The authority alters, forges and replays one weights message and one ack to t1 and
    one batch to edge1 each, through the real Flower path (TLS, node authentication):
    t1 and edge1 refuse each with its code, count it, and the run goes on: later rounds
    deliver, train and acknowledge, and a forged ack of 2^40 deletes no upload."""
    out = tmp_path / "run"
    summary = _run(_federated(out, 25.0, test_transit_faults=TRANSIT_FAULTS))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    assert summary["security"] == {"tls": True, "node_auth": True}
    injected = federation["test_transit_faults_injected"]
    assert set(injected) == {f.split("@")[0] for f in TRANSIT_FAULTS.split(",")}, injected
    refused = {"authentication": 2, "replay": 1}  # tamper and forgery; replay
    by_party = federation["refusals_by_party"]
    # t1 sends again the uploads a refused ack did not let it delete: refused as replays
    assert set(by_party.pop("authority")) <= {"upload"}
    assert set(federation["uploads_rejected"]) <= {"replay"}
    assert by_party == {
        "edge1": {"batch": refused},
        "edge2": {},
        "t1": {"weights": refused, "ack": refused},
        "t2": {},
        "t3": {},
        "t4": {},
    }
    assert federation["rounds"] > max(injected.values())  # the run went on
    assert federation["uploads_accepted"] == federation["uploads_posted"] > 0  # each once
    for outbox in (out / "mailboxes").glob("*/outbox"):
        assert not list(outbox.iterdir()), f"{outbox} still holds uploads"
    t1 = json.loads((out / "mailboxes" / "t1" / "handler.json").read_text())
    assert t1["ack_sequence"] > 5  # genuine acks still taken
    # genuine weights still taken: by the relay, or (reported so, and then not relayed
    # again) over t1's edge link
    edge_link = WeightsReceipts(out / "mailboxes" / "t1").edge_link_version()
    assert max(t1["weights_version"], edge_link) >= 0
    learner = json.loads((out / "parties" / "edge1.learner.json").read_text())
    assert learner["refusals"] == {"batch": refused} and learner["train_steps"] > 0


def test_a_node_is_known_by_its_registered_key_not_by_the_name_it_claims(tmp_path):
    """t1's SuperNode (registered with t1's key) claims to be t2 in query.hello and posts
    an upload sealed with t1's key as t2: the authority still knows it as t1, refuses the
    upload (wrong-sender), and sends t2's acknowledgements and weights to t2 alone."""
    out = tmp_path / "run"
    summary = _run(_federated(out, 15.0, upload_faults=(("t1", "impersonate:t2@1"),)))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    assert federation["node_identity"] == "registered-key"
    ready = json.loads((out / "authority" / "ready.json").read_text())["nodes"]
    registered = json.loads((out / "flower" / "nodes.json").read_text())
    assert ready == {name: node["registered_node_id"] for name, node in registered.items()}
    assert federation["refusals_by_party"]["authority"] == {
        "identity": {"claimed-other-name": 1},
        "upload": {"wrong-sender": 1},
    }
    log = (out / "authority" / "authority.log").read_text()
    assert "registered with t1's key claims to be 't2'; it is t1" in log
    assert "sealed as terminal 't2' but delivered by 't1'" in log
    for host in ("t1", "t2", "t3", "t4"):  # no ack or weights of another terminal reached it
        assert federation["refusals_by_party"][host] == {}, host
        state = json.loads((out / "mailboxes" / host / "handler.json").read_text())
        assert state["ack"] > 0, f"{host} never took an acknowledgement"
    _nothing_lost(out, federation)
    assert federation["terminals"]["t1"]["faults_posted"] == {"impersonate": 1}
