"""Flower plumbing: real SuperLink and SuperNode processes, the app project, the wire meter,
and a federated run on Flower as shipped (the accelerators off)."""

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from fl_crb.federation.accelerators.fast_supernode import install
from fl_crb.federation.deploy.app_project import APP_COMPONENTS, app_project_toml, write_app_project
from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.processes import alive, descendants
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.metering.wire_meter import TLS_LABEL, WireMeter, difference
from fl_crb.federation.server_app import RUN_CONFIG_DEFAULTS, parse_probe_plan
from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import RunTarget

MEGABYTES_5 = 5_000_000


SETTINGS = {
    "tuned": {"supernode_idle_poll_s": 0.05, "warm_clientapps": True},
    "stock-flower": {"superexec_poll_s": 1.0},
}


@pytest.mark.parametrize("setting", ["tuned", pytest.param("stock-flower", marks=pytest.mark.slow)])
def test_probe_round_trip_carries_5_mb_replies_between_real_processes(tmp_path, setting):
    nodes = (NodeSpec("t1", "terminal"), NodeSpec("e1", "edge"))
    config = LaunchConfig(tmp_path, nodes, **SETTINGS[setting])
    with LocalFederation(config) as federation:
        started = [federation.processes.pid(name) for name in federation.processes.names()]
        flower_processes = set(started) | {child for pid in started for child in descendants(pid)}
        result = federation.probe(f"0:{MEGABYTES_5}", rounds=1, timeout_s=150)
        assert result["run"].completed
        failed = federation.run_app({"mode": "authority"}, timeout_s=150)
        node_ids = dict(federation.node_ids)
    assert not [pid for pid in flower_processes if alive(pid)], "processes outlived stop()"

    assert result["nodes"] == {
        str(node_ids["t1"]): {"role": "terminal", "name": "t1"},
        str(node_ids["e1"]): {"role": "edge", "name": "e1"},
    }
    hello, probe = result["exchanges"]
    assert hello["message_type"] == "query.hello"
    assert probe["reply_bytes"] == MEGABYTES_5
    assert set(probe["latency_s"]) == {str(node_ids["t1"]), str(node_ids["e1"])}
    assert 0 < max(probe["latency_s"].values()) <= probe["total_s"]
    for name in ("t1", "e1"):
        pushed = probe["wire"][name]["/v1/fleet/push-object"]["up_bytes"]
        assert MEGABYTES_5 < pushed < MEGABYTES_5 + 20_000  # the reply, plus HTTP and Flower

    assert failed.status == "finished:failed"
    assert "authority-config is empty" in failed.details


def test_federated_run_on_stock_flower_completes_rounds_and_accepts_uploads(tmp_path, caplog):
    """--no-accelerators: stock flower-supernode (3 s idle poll) and a fresh flwr-clientapp
    per message; tiny (2 edges, 4 terminals), 12 s of arrivals at 5 Mbit/s per terminal."""
    tiny = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")
    out = tmp_path / "run"
    target = RunTarget(tiny, 12.0, arrival_rate_override_bps=5e6)
    config = FederatedRunConfig(
        federated_parties(target, str(out)),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        accelerators=False,
    )
    with caplog.at_level(logging.WARNING, logger="fl_crb.federation.deploy.launcher"):
        summary = asyncio.run(run_federated(config))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    assert federation["rounds"] >= 2
    assert federation["uploads_accepted"] == federation["uploads_posted"] > 0
    assert federation["flower"] == {
        "version": "1.42.0",
        "accelerators": [],
        "accelerators_off": caplog.messages[0],
        "supernode_idle_poll_s": 3.0,
        "superexec_poll_s": 0.25,
    }
    assert caplog.messages[0].startswith("Flower accelerators off (fast_supernode, warm_exec")
    assert json.loads((out / "flower" / "flower.json").read_text()) == federation["flower"]
    assert not list((out / "flower" / "logs").glob("*-executor.log"))  # no warm executor


def test_app_project_declares_the_components_and_every_run_config_key(tmp_path):
    from flwr.common.config import validate_config

    write_app_project(tmp_path, {"probe-rounds": 7})
    project = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    app = project["tool"]["flwr"]["app"]
    assert app["components"] == APP_COMPONENTS
    assert app["config"] == {**RUN_CONFIG_DEFAULTS, "probe-rounds": 7}
    valid, errors, _ = validate_config(project, check_module=True, project_dir=tmp_path)
    assert valid, errors
    with pytest.raises(ValueError, match=r"unknown run config keys \['rounds'\]"):
        app_project_toml({"rounds": 3})


def test_probe_plan_errors_name_the_entry():
    assert parse_probe_plan("0:0, 10:5000000") == [(0, 0), (10, 5_000_000)]
    with pytest.raises(ValueError, match="entry '5' is not 'request_bytes:reply_bytes'"):
        parse_probe_plan("0:0,5")
    with pytest.raises(ValueError, match="negative size"):
        parse_probe_plan("-1:0")


def test_launch_config_refuses_repeated_node_names(tmp_path):
    with pytest.raises(ValueError, match="distinct node names"):
        LocalFederation(LaunchConfig(tmp_path, (NodeSpec("a", "edge"), NodeSpec("a", "edge"))))


def test_fast_supernode_refuses_an_idle_poll_out_of_range():
    with pytest.raises(ValueError, match=r"--idle-poll-s must lie in 0\.001\.\.3"):
        install(10.0)


class _HttpEcho:
    """An upstream that answers every HTTP/1.1 request with a fixed 2-byte body."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        connection, _ = self.server.accept()
        buffer = b""
        while chunk := connection.recv(65536):
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if len(rest) < length:
                    break
                buffer = rest[length:]
                connection.sendall(self.RESPONSE)
        connection.close()


def _exchange(connection: socket.socket, pieces: list[bytes]) -> bytes:
    for piece in pieces:
        connection.sendall(piece)
    reply = b""
    while len(reply) < len(_HttpEcho.RESPONSE):
        reply += connection.recv(65536)
    return reply


def test_wire_meter_counts_and_labels_http_bytes_exactly():
    upstream = _HttpEcho()
    meter = WireMeter("127.0.0.1", upstream.port)
    ports = meter.start(["n1"])
    try:
        first = b"POST /v1/fleet/pull-messages HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        second = b"POST /v1/fleet/push-object HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        with socket.create_connection(("127.0.0.1", ports["n1"])) as connection:
            assert _exchange(connection, [first[:7], first[7:30], first[30:]]) == upstream.RESPONSE
            before = meter.snapshot()
            assert _exchange(connection, [second]) == upstream.RESPONSE
        after = meter.snapshot()
    finally:
        meter.stop()
    response = len(upstream.RESPONSE)
    assert before["n1"]["/v1/fleet/pull-messages"] == {
        "up_bytes": len(first),
        "down_bytes": response,
        "requests": 1,
    }
    assert difference(after, before) == {
        "n1": {
            "/v1/fleet/push-object": {
                "up_bytes": len(second),
                "down_bytes": response,
                "requests": 1,
            }
        }
    }


def test_wire_meter_counts_opaque_tls_bytes_under_one_label():
    upstream = socket.create_server(("127.0.0.1", 0))
    meter = WireMeter("127.0.0.1", upstream.getsockname()[1])
    ports = meter.start(["n1"])
    try:
        with socket.create_connection(("127.0.0.1", ports["n1"])) as connection:
            connection.sendall(b"\x16\x03\x01\x02\x00" + bytes(300))
            accepted, _ = upstream.accept()
            received = b""
            while len(received) < 305:
                received += accepted.recv(65536)
            accepted.close()
        counts = meter.snapshot()["n1"]
    finally:
        meter.stop()
        upstream.close()
    assert counts[TLS_LABEL]["up_bytes"] == 305 and counts[TLS_LABEL]["requests"] == 0


def test_flower_components_import_without_torch():
    """ClientApp processes start per message: the app module must stay light."""
    probe = (
        "import sys, fl_crb.federation.client_app, fl_crb.federation.server_app; "
        "print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert output.stdout.strip() == "False", output.stderr
