"""The role commands: `fl-crb authority`, `fl-crb edge`, `fl-crb terminal`, each on its own.

Fast tests drive the run service over real HTTPS on loopback, with bundles made by
`create_keys`: signed hellos (a bad signature, an unknown host, a replay refused, each
naming the peer), the epoch chosen once the start quorum said hello (the parties that
never did named) and handed to late parties too, the edges' runtime addresses served
to the terminals, the authority's SuperLink state in memory, and the NTP-style clock
offset.
The end-to-end test starts the three commands as separate processes with real Flower
(TLS and node authentication), each with only its own bundle and its own state folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fl_crb.federation.deploy.flower_commands import FlowerCommands
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec, Security
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.keys import create_keys, plan_for_topology
from fl_crb.federation.roles.authority_role import (
    AuthorityRoleConfig,
    plan_run,
    wait_for_start_quorum,
)
from fl_crb.federation.roles.clock_offset import TimeSample, best_offset, flagged
from fl_crb.federation.roles.run_service import RunServer, RunService
from fl_crb.federation.roles.service_client import ServiceClient, ServiceError, parse_authority
from fl_crb.federation.roles.settings import (
    RUNNING,
    RunProgress,
    RunSettings,
    parse_settings,
    settings_json,
)
from fl_crb.federation.roles.signed_requests import (
    SIGNATURE_HEADER,
    RequestSigner,
    RequestVerifier,
)
from fl_crb.learn.method_config import MethodConfig
from fl_crb.learn.numpy_qnetwork import weight_shapes
from fl_crb.learn.weights_file import save_weights_file
from fl_crb.policies.spec import Federated, WeightsFile
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.local_run import LocalRunConfig, run_spec
from fl_crb.runtime.placement import Loopback
from fl_crb.topology import load_topology
from tests.host_records import recorded_strings

TOPOLOGY = Path(__file__).resolve().parent / "roles-topology.yaml"
"""One edge (edge1) and two terminals (t1, t2); the cloud host is "cloud"."""
ROLES = {"edge1": "edge", "t1": "terminal", "t2": "terminal"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("roles") / "keys"
    create_keys(folder, plan_for_topology(load_topology(TOPOLOGY), []))
    return folder


def _settings(tmp_path: Path) -> RunSettings:
    spec, params, _ = run_spec(
        LocalRunConfig(RunTarget(str(TOPOLOGY), 2.0), Federated(), str(tmp_path))
    )
    return RunSettings(
        run=spec,
        topology_yaml=TOPOLOGY.read_text(),
        upload_run_id_hex="ab" * 16,
        method=MethodConfig(),
        epsilon=0.1,
        slot_s=params.slot_s,
        superlink_port=9301,
        tls=True,
        node_auth=True,
        accelerators=True,
        supernode_idle_poll_s=0.25,
        superexec_poll_s=0.25,
        start_weights=False,
    )


@pytest.fixture
def service(keys, tmp_path):
    """A run service on a free loopback port: start quorum 2 of 3, a 30 s start lead."""
    cloud = HostBundle.load(keys / "cloud", role="authority").authority()
    settings = _settings(tmp_path)
    notes: list[str] = []
    run_service = RunService(
        settings,
        RequestVerifier({h: cloud.supernode_public_keys[h] for h in ROLES}, "ab" * 16),
        ROLES,
        quorum=2,
        start_lead_s=30.0,
        note=notes.append,
    )
    server = RunServer(
        run_service, "127.0.0.1", 0, cloud.superlink_certificate, cloud.superlink_key
    )
    server.start()
    run_service.notes = notes
    run_service.address = f"127.0.0.1:{server.port}"
    yield run_service
    server.stop()


def _client(keys: Path, service: RunService, host: str = "t1") -> ServiceClient:
    return ServiceClient(service.address, keys / host / "ca.crt", say=lambda _: None, give_up_s=1)


def _signer(keys: Path, host: str, key_of: str | None = None) -> RequestSigner:
    key = keys / (key_of or host) / "supernodes" / f"{key_of or host}.key"
    return RequestSigner(host, "ab" * 16, key)


CLOCK = {"offset_s": 0.0, "delay_s": 0.001, "samples": 8}


def _hello(keys, service, host, **extra) -> dict:
    body = {"kind": "hello", "role": ROLES.get(host, "terminal"), "clock": CLOCK, **extra}
    reply = _client(keys, service, host if host in ROLES else "t1").signed(
        "/hello", body, _signer(keys, host)
    )
    return json.loads(reply)


# -- the clock offset -------------------------------------------------------------------------


def test_offset_and_delay_follow_the_four_timestamps():
    # the authority 0.25 s ahead; 0.01 s each way on the network; 0.002 s of its own work
    sample = TimeSample(sent_s=100.0, received_s=100.26, answered_s=100.262, returned_s=100.022)
    assert sample.offset_s == pytest.approx(0.25)
    assert sample.delay_s == pytest.approx(0.02)


def test_the_least_delayed_sample_counts():
    queued = TimeSample(0.0, 0.5, 0.5, 0.6)  # 0.45 s of queueing on the way out
    direct = TimeSample(0.0, 0.06, 0.06, 0.02)
    best = best_offset([queued, direct])
    assert (best.offset_s, best.delay_s, best.samples) == (
        pytest.approx(0.05),
        pytest.approx(0.02),
        2,
    )
    with pytest.raises(ValueError, match="at least one"):
        best_offset([])


def test_an_offset_above_a_tenth_of_a_slot_is_flagged():
    assert not flagged(0.0099, 0.1)
    assert flagged(-0.0101, 0.1)


def test_the_measured_offset_on_one_clock_is_within_half_the_delay(keys, service):
    offset = _client(keys, service).clock_offset(samples=4)
    assert offset.samples == 4
    assert abs(offset.offset_s) <= offset.delay_s / 2 + 1e-9


# -- settings and signed requests -------------------------------------------------------------


def _first_signer(keys: Path, host: str = "t1") -> RequestSigner:
    """A party's signer before it knows the run (its first request for the settings)."""
    return RequestSigner(host, None, keys / host / "supernodes" / f"{host}.key")


def test_settings_travel_whole_with_the_topology_text(keys, service, tmp_path):
    settings, progress = _client(keys, service).settings(_first_signer(keys))
    assert settings == service.settings
    assert progress.phase == "waiting" and progress.epoch_unix_s is None
    folder = tmp_path / "party"
    folder.mkdir()
    spec = settings.run_spec(folder)
    assert Path(spec.target.topology_path) == folder / "topology.yaml"
    assert spec.topology().edge_names == ["edge1"]


def test_settings_with_a_bad_field_are_refused_naming_it(tmp_path):
    body = json.loads(json.dumps(settings_json(_settings(tmp_path), RunProgress())))
    body["settings"]["epsilon"] = "high"
    with pytest.raises(ValueError, match="epsilon"):
        parse_settings(body, "settings from test")


def test_settings_go_only_to_a_party_of_the_run_by_a_signed_request(keys, service):
    client = _client(keys, service)
    with pytest.raises(ServiceError, match=r"no GET /settings; POST /settings, signed"):
        client._request("GET", "/settings")
    with pytest.raises(ServiceError, match="its signature does not verify"):
        client._request("POST", "/settings", b'{"host": "t1"}', {SIGNATURE_HEADER: "AAAA"})
    with pytest.raises(ServiceError, match="does not verify with t1's SuperNode key"):
        client.settings(_signer(keys, "t1", key_of="t2"))
    with pytest.raises(ServiceError, match="claims host 't9'"):
        client.settings(RequestSigner("t9", None, keys / "t1" / "supernodes" / "t1.key"))
    with pytest.raises(ServiceError, match="is for run 'cd"):
        client.settings(RequestSigner("t1", "cd" * 16, keys / "t1" / "supernodes" / "t1.key"))
    data, signature = _signer(keys, "t1").sign({"kind": "settings"})
    client._request("POST", "/settings", data, {SIGNATURE_HEADER: signature})
    with pytest.raises(ServiceError, match="replays nonce"):
        client._request("POST", "/settings", data, {SIGNATURE_HEADER: signature})
    assert service.refusals == {
        "bad-signature": 2, "unknown-host": 1, "other-run": 1, "replay": 1,
    }  # fmt: skip
    with pytest.raises(ServiceError, match="is for run None"):  # a null run id: settings only
        client.signed("/hello", {"role": "terminal", "clock": CLOCK}, _first_signer(keys))


def test_a_bad_signature_is_refused_naming_the_peer(keys, service):
    signer = _signer(keys, "t1", key_of="t2")  # t2's key, claiming to be t1
    with pytest.raises(ServiceError, match=r"claiming host 't1'.*does not verify"):
        _client(keys, service).signed("/hello", {"role": "terminal", "clock": CLOCK}, signer)
    assert service.refusals == {"bad-signature": 1}
    assert "request from 127.0.0.1:" in service.refused[0]
    assert any(note.startswith("refused: request from 127.0.0.1:") for note in service.notes)
    assert service.progress.hellos == ()


def test_an_unknown_host_is_refused(keys, service):
    signer = _signer(keys, "t9", key_of="t1")
    with pytest.raises(ServiceError, match="claims host 't9', which the authority's bundle"):
        _client(keys, service).signed("/hello", {"role": "terminal", "clock": CLOCK}, signer)
    assert service.refusals == {"unknown-host": 1}


def test_a_replayed_request_and_a_wrong_role_are_refused(keys, service):
    data, signature = _signer(keys, "t1").sign({"kind": "hello", "role": "edge", "clock": CLOCK})
    client = _client(keys, service)
    headers = {SIGNATURE_HEADER: signature}
    with pytest.raises(ServiceError, match="t1 is 'terminal'"):
        client._request("POST", "/hello", data, headers)
    with pytest.raises(ServiceError, match="replays nonce"):
        client._request("POST", "/hello", data, headers)
    assert service.refusals == {"wrong-role": 1, "replay": 1}


def test_the_epoch_is_chosen_once_the_quorum_said_hello_and_a_late_party_gets_the_same(
    keys, service
):
    first = _hello(keys, service, "edge1", runtime={"host": "127.0.0.1", "port": 40001})
    assert first == {"epoch_unix_s": None}
    assert service.progress.phase == "waiting" and not service.quorum_reached.is_set()
    with pytest.raises(RuntimeError, match=r"after the start quorum \(2\) said hello; 1 did"):
        service.start()
    # the quorum said hello: the authority's rounds start, the epoch waits until they serve
    assert _hello(keys, service, "t1") == {"epoch_unix_s": None}
    assert service.quorum_reached.is_set() and service.progress.epoch_unix_s is None
    before = time.time()
    epoch = service.start()
    assert before + 30.0 <= epoch <= time.time() + 30.0  # the lead, on the authority's clock
    assert service.progress.phase == RUNNING and service.progress.epoch_unix_s == epoch
    with pytest.raises(RuntimeError, match="chosen once"):
        service.start()
    assert _hello(keys, service, "t1") == {"epoch_unix_s": epoch}  # a party polling for it
    assert _hello(keys, service, "t2") == {"epoch_unix_s": epoch}
    _, progress = _client(keys, service).settings(_signer(keys, "t1"))
    assert progress.epoch_unix_s == epoch
    assert progress.hellos == ("edge1", "t1", "t2")
    assert {e: (a.host, a.port) for e, a in progress.edge_addresses().items()} == {
        "edge1": ("127.0.0.1", 40001)
    }
    assert set(service.offsets) == {"edge1", "t1", "t2"}


def test_an_edge_hello_without_its_runtime_address_is_refused(keys, service):
    with pytest.raises(ServiceError, match="runtime must be"):
        _hello(keys, service, "edge1")


def test_an_edge_gets_its_own_starting_weights_and_a_terminal_none(keys, service, tmp_path):
    weights = tmp_path / "start-weights-edge1.npz"
    weights.write_bytes(b"edge1's weights file")
    service.start_weights = {"edge1": weights}
    got = _client(keys, service, "edge1").signed(
        "/weights", {"kind": "weights"}, _signer(keys, "edge1")
    )
    assert got == b"edge1's weights file"
    with pytest.raises(ServiceError, match="only edges get weights"):
        _client(keys, service).signed("/weights", {"kind": "weights"}, _signer(keys, "t1"))
    assert service.refusals == {"wrong-role": 1}


def test_authority_addresses_are_parsed_or_refused_naming_the_flag():
    assert parse_authority("10.0.0.1") == ("10.0.0.1", 9300)
    assert parse_authority("cloud.example.org:9400") == ("cloud.example.org", 9400)
    assert parse_authority("[::1]:9401") == ("::1", 9401)
    with pytest.raises(ValueError, match="--authority"):
        parse_authority("10.0.0.1:99999")


def test_an_unreachable_authority_is_retried_then_named(keys, tmp_path):
    said: list[str] = []
    client = ServiceClient("127.0.0.1:1", keys / "t1" / "ca.crt", said.append, give_up_s=1.2)
    with pytest.raises(ServiceError, match="stayed unreachable"):
        client.settings(_first_signer(keys))
    assert said and all("authority at 127.0.0.1:1 unreachable" in line for line in said)


def test_a_certificate_for_another_address_is_refused_with_the_fix(keys, tmp_path):
    cloud = HostBundle.load(keys / "cloud", role="authority").authority()
    verifier = RequestVerifier({}, "ab" * 16)
    run_service = RunService(_settings(tmp_path), verifier, ROLES, 3, 1.0, note=lambda _: None)
    server = RunServer(run_service, "0.0.0.0", 0, cloud.superlink_certificate, cloud.superlink_key)
    server.start()
    try:  # 127.0.0.2 reaches this host, but the certificate names 127.0.0.1 and localhost
        client = ServiceClient(f"127.0.0.2:{server.port}", keys / "t1" / "ca.crt", print, 1)
        with pytest.raises(ServiceError, match=r"--san 127\.0\.0\.2"):
            client.settings(_first_signer(keys))
    finally:
        server.stop()


def test_the_authority_serves_the_parties_polls_pacing_and_priority(keys, tmp_path):
    parties = federated_parties(
        RunTarget(str(TOPOLOGY), 2.0), str(tmp_path / "cloud"), pace_uplink=False,
        pace_ticks_per_slot=2, realtime_priority=5,
    )  # fmt: skip
    run = FederatedRunConfig(parties, supernode_idle_poll_s=1.0, superexec_poll_s=0.5)
    settings = plan_run(AuthorityRoleConfig(run, keys / "cloud")).settings
    assert (
        settings.run.realtime_priority == 5
    )  # each party checks it may take it, not the authority
    assert (settings.pace_uplink, settings.pace_ticks_per_slot) == (False, 2)
    assert (settings.supernode_idle_poll_s, settings.superexec_poll_s) == (1.0, 0.5)


def test_the_authoritys_superlink_keeps_its_state_in_memory(keys, tmp_path):
    """As the coordinator's (unless a fault schedule ends it): an on-disk state made Flower
    fail Fleet requests under load ("database is locked"), and nothing restarts it here."""
    run = FederatedRunConfig(federated_parties(RunTarget(str(TOPOLOGY), 2.0), str(tmp_path)))
    launch = plan_run(AuthorityRoleConfig(run, keys / "cloud")).launch
    assert not launch.durable_state and launch.max_restarts == 0
    argv = FlowerCommands(launch, Loopback()).superlink("127.0.0.1", 9301)
    assert "--database" not in argv  # Flower's default: its state in memory


def test_the_authority_names_the_parties_that_never_said_hello(keys, service):
    _hello(keys, service, "edge1", runtime={"host": "127.0.0.1", "port": 40001})
    with pytest.raises(RuntimeError) as refused:
        asyncio.run(wait_for_start_quorum(service, 0.3, service.notes.append))
    assert str(refused.value).startswith(
        "only 1 of the start quorum 2 said hello within 0.3 s; never came: t1, t2 ("
    )
    _hello(keys, service, "t2")
    asyncio.run(wait_for_start_quorum(service, 0.3, service.notes.append))
    assert service.notes[-1] == "start quorum: 2 of 3 said hello; starting the authority's rounds"


def test_a_run_from_a_weights_file_serves_each_edge_its_learners_start(keys, tmp_path):
    start = tmp_path / "start.npz"
    shapes = weight_shapes(edges=1, hidden=64, lstm_hidden=32)
    save_weights_file(start, {k: np.zeros(s, np.float32) for k, s in shapes.items()}, 3)
    state = tmp_path / "cloud"
    run = FederatedRunConfig(
        federated_parties(RunTarget(str(TOPOLOGY), 2.0), str(state), WeightsFile(str(start)))
    )
    plan = plan_run(AuthorityRoleConfig(run, keys / "cloud"))
    assert plan.settings.start_weights
    assert set(plan.start_weights) == {"edge1"}
    assert plan.start_weights["edge1"].read_bytes() == start.read_bytes()
    assert plan.settings.run.target.topology_path == "topology.yaml"
    assert (state / "topology.yaml").read_text() == TOPOLOGY.read_text()
    authority = json.loads((state / "config" / "authority.json").read_text())
    assert authority["bundle"] == str(keys / "cloud")
    assert [t["edge"] for t in authority["terminals"]] == ["edge1", "edge1"]
    with pytest.raises(ValueError, match="holds an earlier run"):
        plan_run(AuthorityRoleConfig(run, keys / "cloud"))


def test_the_authority_refuses_a_bundle_of_another_host_naming_it(keys, tmp_path):
    run = FederatedRunConfig(federated_parties(RunTarget(str(TOPOLOGY), 2.0), str(tmp_path / "s")))
    with pytest.raises(ValueError, match="but an authority's is needed"):
        plan_run(AuthorityRoleConfig(run, keys / "t1"))


# -- Flower from one host's bundle ------------------------------------------------------------


def test_a_supernode_dialing_a_remote_superlink_needs_only_its_own_bundle(keys, tmp_path):
    node = NodeSpec("t1", "terminal")
    launch = LaunchConfig(
        tmp_path, (node,), security=Security(keys / "t1"), meter_wire=False,
        superlink_address="192.0.2.10:9301",
    )  # fmt: skip
    commands = FlowerCommands(launch, Loopback())
    commands.check_keys((node,))  # no SuperLink certificate or public key needed here
    argv = commands.supernode(node, launch.superlink_address, 9094)
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(
        keys / "t1" / "supernodes" / "t1.key"
    )
    assert argv[argv.index("--root-certificates") + 1] == str(keys / "t1" / "ca.crt")
    other = NodeSpec("t2", "terminal")  # t2's key is not in t1's bundle
    with pytest.raises(FileNotFoundError, match=r"t2\.key: missing from the bundle"):
        commands.check_keys((other,))


def test_a_superlink_alone_from_the_authority_bundle_admits_every_party(keys, tmp_path):
    launch = LaunchConfig(
        tmp_path, (), security=Security(keys / "cloud"), meter_wire=False,
        admitted_nodes=tuple(ROLES),
    )  # fmt: skip
    commands = FlowerCommands(launch, Loopback())
    commands.check_keys(())
    argv = commands.superlink("127.0.0.1", 9301)
    assert argv[argv.index("--ssl-certfile") + 1] == str(keys / "cloud" / "superlink.crt")
    with pytest.raises(ValueError, match="distinct node names"):
        LocalFederation(replace(launch, admitted_nodes=()))
    with pytest.raises(ValueError, match="no admitted_nodes"):
        replace(launch, superlink_address="127.0.0.1:9301")


# -- the three commands, each a process tree of its own ---------------------------------------


def _role(state: Path, *arguments: str) -> subprocess.Popen:
    """`fl-crb ARGUMENTS` as its own process, its stderr in STATE.err."""
    log = open(state.with_suffix(".err"), "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "fl_crb.cli", *arguments],
        cwd=state.parent,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _service_port(err: Path, authority: subprocess.Popen) -> int:
    give_up = time.monotonic() + 120
    while time.monotonic() < give_up and authority.poll() is None:
        found = re.search(r"run service https://127\.0\.0\.1:(\d+)", err.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"the authority never said where it serves:\n{err.read_text()}")


def test_authority_edge_and_terminals_run_each_from_its_own_bundle_and_state(tmp_path):
    """tests/roles-topology.yaml (edge1; t1, t2) with TLS and node authentication: four
    `fl-crb` processes, each given only its own bundle (copied into its own state
    folder), meet through the run service, run 8 s of arrivals and report. The edge's
    learner, killed once the run started, is started again by `fl-crb edge`."""
    keys = tmp_path / "keys"
    made = subprocess.run(
        [sys.executable, "-m", "fl_crb.cli", "keys", "--topology", str(TOPOLOGY),
         "--out", str(keys)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    states = {host: tmp_path / host for host in ("cloud", *ROLES)}
    for host, state in states.items():
        state.mkdir()
        shutil.copytree(keys / host, state / "bundle")  # what `scp -rp` does on real hosts
    cloud = states["cloud"]
    started = time.monotonic()
    authority = _role(
        cloud,
        "authority", "--bundle", str(cloud / "bundle"), "--state", str(cloud),
        "--topology", str(TOPOLOGY), "--duration", "8s", "--listen", "127.0.0.1",
        "--port", "0", "--superlink-port", "0", "--round-period", "1s", "--min-pool", "4",
        "--start-lead", "3s",
    )  # fmt: skip
    processes = {"cloud": authority}
    try:
        port = _service_port(cloud.with_suffix(".err"), authority)
        for host, role in ROLES.items():
            state = states[host]
            extra = ["--runtime-port", "0"] if role == "edge" else []
            processes[host] = _role(
                state, role, "--bundle", str(state / "bundle"), "--state", str(state),
                "--authority", f"127.0.0.1:{port}", "--give-up", "60s", *extra,
            )  # fmt: skip
        killed = _kill_the_learner_once_running(states["edge1"], "edge1")
        codes = {host: process.wait(timeout=300) for host, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    wall_s = time.monotonic() - started
    logs = {host: state.with_suffix(".err").read_text() for host, state in states.items()}
    assert codes == dict.fromkeys(processes, 0), logs

    summary = json.loads((cloud / "summary.json").read_text())
    assert summary["security"] == {"tls": True, "node_auth": True}
    assert summary["completed"] and summary["rounds"] >= 2, summary
    assert summary["uploads_accepted"] > 0, summary
    rejected = sum(summary["uploads_rejected"].values())
    assert summary["uploads_accepted"] == summary["uploads_posted"] - rejected
    assert summary["service_refusals"] == {} and summary["missing_reports"] == []
    assert set(summary["clock_offsets"]) == set(ROLES)
    for host, offset in summary["clock_offsets"].items():  # one clock: within half the delay
        assert abs(offset["offset_ms"]) <= offset["uncertainty_ms"] + 1e-3, host
    assert summary["tasks"] > 0
    for host in ("t1", "t2"):
        report = summary["parties"][host]
        assert report["terminal"]["tasks"] > 0 and report["terminal"]["posted"] > 0
        logged = states[host] / "party" / f"{host}.tasks.jsonl"
        assert logged.read_text().count("\n") >= report["terminal"]["tasks"]
    assert summary["parties"]["edge1"]["edge_server"]["tasks_received"] > 0
    edge = summary["parties"]["edge1"]
    assert edge["learner_restarts"] == 1 and edge["learner_given_up"] is None, edge
    restarted = json.loads((states["edge1"] / "learners.json").read_text())["edge1"]
    assert restarted["pid"] != killed and restarted["ready"], restarted

    # Nothing was given a path outside its own state folder: every path in every config
    # and command line under tmp_path lies in the host's own folder; the authority's
    # topology file reached the parties as text only.
    for host, state in states.items():
        strings = recorded_strings(state)
        assert strings, f"{host} recorded no configs or command lines"
        foreign = [s for s in strings if str(tmp_path) in s and str(state) not in s]
        assert foreign == [], f"{host} was given another host's path: {foreign}"
        if host != "cloud":
            assert not any(str(TOPOLOGY) in s for s in strings), host
        assert json.loads((state / "bundle" / "bundle.json").read_text())["host"] == host
    print(f"role run wall time {wall_s:.1f} s")


def _kill_the_learner_once_running(state: Path, edge: str) -> int:
    """SIGKILL `edge`'s learner once the edge passed the epoch on and the learner said
    READY (STATE/learners.json); its pid."""
    give_up = time.monotonic() + 200
    while time.monotonic() < give_up:
        try:
            learner = json.loads((state / "learners.json").read_text())[edge]
        except (OSError, ValueError, KeyError):  # not yet, or half-written
            learner = None
        if (
            learner
            and learner["ready"]
            and f"edge {edge}: epoch" in state.with_suffix(".err").read_text()
        ):
            os.kill(learner["pid"], signal.SIGKILL)
            return learner["pid"]
        time.sleep(0.2)
    raise AssertionError(f"{edge}'s learner never ran: {state.with_suffix('.err').read_text()}")


def test_sigterm_stops_the_authority_with_one_line_and_leaves_no_process(tmp_path, keys):
    state = tmp_path / "cloud"
    state.mkdir()
    shutil.copytree(keys / "cloud", state / "bundle")
    authority = _role(
        state,
        "authority", "--bundle", str(state / "bundle"), "--state", str(state),
        "--topology", str(TOPOLOGY), "--duration", "5s", "--listen", "127.0.0.1",
        "--port", "0", "--superlink-port", "0",
    )  # fmt: skip
    err = state.with_suffix(".err")
    try:
        _service_port(err, authority)
        give_up = time.monotonic() + 60
        while "waiting for edges" not in err.read_text() and time.monotonic() < give_up:
            time.sleep(0.1)
        authority.send_signal(signal.SIGTERM)
        assert authority.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if authority.poll() is None:
            authority.kill()
    lines = err.read_text().strip().splitlines()
    assert lines[-1] == "fl-crb authority: stopped by SIGTERM; its processes are stopped"
    assert "Traceback" not in err.read_text()
    left = [  # the SuperLink and everything else it started, by their command lines
        pid for pid in os.listdir("/proc") if pid.isdigit() and str(state) in _cmdline(pid)
    ]
    assert left == []


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_ctrl_c_stops_a_terminal_waiting_for_an_unreachable_authority(tmp_path, keys):
    state = tmp_path / "t1"
    state.mkdir()
    shutil.copytree(keys / "t1", state / "bundle")
    terminal = _role(
        state, "terminal", "--bundle", str(state / "bundle"), "--state", str(state),
        "--authority", "127.0.0.1:1",
    )  # fmt: skip
    err = state.with_suffix(".err")
    try:
        give_up = time.monotonic() + 60
        while "unreachable" not in err.read_text() and time.monotonic() < give_up:
            time.sleep(0.1)
        assert "authority at 127.0.0.1:1 unreachable (settings" in err.read_text()
        terminal.send_signal(signal.SIGINT)
        assert terminal.wait(timeout=60) == 128 + signal.SIGINT
    finally:
        if terminal.poll() is None:
            terminal.kill()
    text = err.read_text()
    assert text.strip().splitlines()[-1] == (
        "fl-crb terminal: stopped by SIGINT; its processes are stopped"
    )
    assert "Traceback" not in text


@pytest.mark.root
@pytest.mark.skipif(
    not (shutil.which("setpriv") and shutil.which("unshare")), reason="needs util-linux"
)
def test_a_party_knows_whether_it_may_take_the_runs_realtime_priority(tmp_path):
    """A user with no capability and no RLIMIT_RTPRIO may not (its command would stop
    with the fix); with CAP_SYS_NICE alone, as the emulator grants it, it may. (In a
    mount namespace of its own with the code opened as the emulator opens it to its
    hosts' users, for a checkout under a closed folder.)"""
    from emulation.host_state import code_exposure_commands, code_roots

    opened = " && ".join(["true", *code_exposure_commands(code_roots(), tmp_path)])
    check = "from fl_crb.federation.roles.party_role import may_take_realtime as m; print(m(5))"
    user = ["setpriv", "--reuid=1700999998", "--regid=1700999998", "--clear-groups"]
    plain = [*user, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    nice = [*user, "--inh-caps=-all,+sys_nice", "--ambient-caps=+sys_nice",
            "--bounding-set=-all,+sys_nice", "--no-new-privs"]  # fmt: skip
    answers = []
    for confined in (plain, nice):
        argv = shlex.join([*confined, sys.executable, "-c", check])
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", f"{opened}; {argv}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answers.append(done.stdout.strip())
    assert answers == ["False", "True"]


@pytest.mark.parametrize("role", ["terminal_role", "edge_role"])
def test_a_terminal_or_edge_command_loads_no_flower_module_of_its_own(role):
    """Its SuperNode is a process of its own: the role's process, which lives on a Pi for
    the whole run, leaves Flower's ~200 modules (about 40 MB) to it."""
    probe = (
        f"import sys, fl_crb.federation.roles.{role}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flwr'))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
