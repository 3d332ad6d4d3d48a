"""Every emulated host has a private state directory, and no other host can read it.

The root tests build `topologies/tiny.yaml` (7 hosts, under a second to start) with the
hosts' state backed by a fresh folder, and check from processes started through
`MininetPlacement` that a terminal's process (as its host's own user) reads and writes
its own state directory and reaches the other hosts over the network, but cannot read the
cloud's secret nor terminal t1's file: not by the backing folder, not by the state path,
not through `/proc/<pid>/root` of any process (t1's included), and cannot unmount what
hides them. The emulator reads everything after the run, and the root namespace never
holds any of the mounts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulation.network import NetworkConfig
from tests.test_emulation_network import TOPOLOGIES, leftovers, real_network

needs_mnexec = pytest.mark.skipif(
    shutil.which("mnexec") is None, reason="needs mnexec (apt-get install mininet)"
)

T2_PROBE = r"""
import json, os, socket, subprocess, sys
state, hosts_dir, t1_address, port = sys.argv[1:5]
others = sys.argv[5:]  # (host, file name) pairs of other hosts' files, flattened

def read(path):
    try:
        with open(path) as file:
            return file.read()
    except OSError as error:
        return type(error).__name__

with open(os.path.join(state, "own.txt"), "w") as file:
    file.write("t2 was here")
pids = [p for p in os.listdir("/proc") if p.isdigit()]
readable = {}
for host, name in zip(others[::2], others[1::2]):
    routes = [os.path.join(hosts_dir, host, name), os.path.join(state, name)]
    routes += [f"/proc/{pid}/root{state}/{name}" for pid in pids]
    readable[name] = [route for route in routes if not read(route).endswith("Error")]
unmount = subprocess.run(["umount", hosts_dir], capture_output=True, text=True)
with socket.create_connection((t1_address, int(port)), timeout=5) as connection:
    greeting = connection.makefile().readline().strip()
print(json.dumps({
    "uid": os.getuid(),
    "own": read(f"/proc/self/root{state}/own.txt"),
    "hosts_dir_listing": os.listdir(hosts_dir),
    "routes_tried": len(pids) + 2,
    "readable": readable,
    "unmount_refused": unmount.returncode != 0,
    "greeting": greeting,
}))
"""

T1_SERVER = r"""
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
connection, _ = server.accept()
connection.sendall(b"hello from t1\n")
connection.close()
"""


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` to its end; its output, with a failure naming the command."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{argv} failed: {result.stderr}"
    return result


def our_mounts(*paths: Path) -> list[str]:
    """Lines of the root namespace's mountinfo that mount something on or under `paths`."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [
        line for line in lines if any(f" {p}" in line for p in paths) or "fl-crb-private" in line
    ]


@pytest.fixture
def run_folder() -> Iterator[Path]:
    """A run folder every user may traverse (pytest's own tmp_path is root-only, which
    would fence the hosts off for the wrong reason)."""
    folder = Path(tempfile.mkdtemp(prefix="fl-crb-private-dirs-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_the_state_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match=r"network.host_state_dir: got 'var/lib'"):
        NetworkConfig(host_state_dir=Path("var/lib"))


@needs_mnexec
@real_network
def test_a_terminal_reads_only_its_own_state_directory(run_folder: Path) -> None:
    from emulation.network import EmulatedNetwork
    from emulation.placement import MininetPlacement
    from emulation.teardown import cleanup, namespace_inode
    from fl_crb.topology import load_topology

    hosts_dir = run_folder / "hosts"
    net = EmulatedNetwork(load_topology(TOPOLOGIES / "tiny.yaml"), hosts_dir=hosts_dir)
    try:
        with net:
            slot = net.plan.slot
            inodes = {namespace_inode(net.host(h.name).pid) for h in net.hosts()}
            placement = MininetPlacement(net)
            state = placement.state_dir("t2")
            assert state == placement.state_dir("cloud") == NetworkConfig().host_state_dir
            assert placement.state_backing_dir("t1") == hosts_dir / "t1"
            owners = {h.name: (hosts_dir / h.name).stat() for h in net.hosts()}
            assert {name: s.st_uid for name, s in owners.items()} == {
                h.name: net.host_uid(h.name) for h in net.hosts()
            }
            assert len({s.st_uid for s in owners.values()}) == len(owners)
            assert {s.st_mode & 0o777 for s in owners.values()} == {0o700}

            secret = "umask 077; echo cloud-secret > secret"
            run(placement.confined_command("cloud", ["sh", "-ec", f"cd {state}; {secret}"]))
            run(placement.confined_command("t1", ["sh", "-ec", f"echo t1-data > {state}/t1.txt"]))
            server = subprocess.Popen(
                placement.confined_command("t1", [sys.executable, "-c", T1_SERVER, "9700"]),
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                assert server.stdout.readline().strip() == "listening"
                probe = run(placement.confined_command("t2", [
                    sys.executable, "-c", T2_PROBE, str(state), str(hosts_dir),
                    net.address("t1", "t2"), "9700", "cloud", "secret", "t1", "t1.txt",
                ]))  # fmt: skip
            finally:
                server.kill()
                server.wait()
            seen = json.loads(probe.stdout)
            assert seen["uid"] == net.host_uid("t2")
            assert seen["own"] == "t2 was here"  # its own state, even through /proc/self/root
            assert seen["hosts_dir_listing"] == []  # the backing folders are hidden
            assert seen["routes_tried"] > len(net.hosts())
            assert seen["readable"] == {"secret": [], "t1.txt": []}
            assert seen["unmount_refused"]
            assert seen["greeting"] == "hello from t1"

            # a root process on t2 (as today's parties run) sees the same, and pings t1
            listings = {
                path: run(placement.command("t2", ["ls", "-A", str(path)])).stdout.split()
                for path in (state, hosts_dir)
            }
            assert listings == {state: ["own.txt"], hosts_dir: []}
            ping = run(placement.command("t2", ["ping", "-n", "-c1", "-W2", net.address("t1")]))
            assert " 0% packet loss" in ping.stdout
            assert our_mounts(hosts_dir, state) == []  # nothing mounted in the root namespace
        assert our_mounts(hosts_dir, state) == []
        assert (hosts_dir / "cloud" / "secret").read_text() == "cloud-secret\n"
        assert (hosts_dir / "t1" / "t1.txt").read_text() == "t1-data\n"
        assert (hosts_dir / "t2" / "own.txt").read_text() == "t2 was here"
        owned = {p.stat().st_uid for p in hosts_dir.rglob("*")}
        assert owned == {0}, "the state directories go back to root after the run"
        assert leftovers(slot, inodes) == []
    finally:
        cleanup()


@needs_mnexec
@real_network
def test_a_state_path_inside_the_hosts_folder_is_refused(run_folder: Path) -> None:
    from emulation.network import EmulatedNetwork, NetworkBuildError
    from fl_crb.topology import load_topology

    config = NetworkConfig(host_state_dir=run_folder / "hosts" / "state")
    net = EmulatedNetwork(
        load_topology(TOPOLOGIES / "tiny.yaml"), config, hosts_dir=run_folder / "hosts"
    )
    with pytest.raises(NetworkBuildError, match="must not contain each other"), net:
        pass


CLOSED_PROBE = r"""
import json, os, subprocess, sys
clone, state, hosts_dir, secret = sys.argv[1:5]
def read(path):
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError as error:
        return type(error).__name__
tool = subprocess.run([os.path.join(clone, ".venv", "bin", "tool")], capture_output=True,
                      text=True, env={"PYTHONPATH": clone})
print(json.dumps({
    "uid": os.getuid(),
    "tool": tool.stdout.strip() or tool.stderr.strip()[-300:],
    "own": read(os.path.join(state, "own.txt")),
    "hosts_dir_listing": os.listdir(hosts_dir),
    "secret": read(secret),
    "writes_code": subprocess.run(["touch", os.path.join(clone, "new")]).returncode == 0,
}))
"""
TOOL = """import sys
import package_of_the_clone
print(sys.prefix, package_of_the_clone.WHERE)
"""


@pytest.mark.root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_code_under_a_closed_folder_runs_as_a_hosts_user(run_folder: Path) -> None:
    """A checkout in a `mktemp -d` folder (0700), its venv inside: a host's user runs the
    venv's console script (its `#!` names the venv's Python by the closed path) importing
    the checkout's package, reads its own state, and sees neither the hosts' folder nor
    the closed folder's other files; the code is read-only to it."""
    import os

    from emulation.host_state import HostStateDirs

    closed = Path(tempfile.mkdtemp(prefix="fl-crb-closed-"))  # 0700, as mktemp -d makes it
    try:
        clone = closed / "clone"
        (clone / "package_of_the_clone").mkdir(parents=True)
        (clone / "package_of_the_clone" / "__init__.py").write_text("WHERE = 'clone'\n")
        (closed / "secret.txt").write_text("not for the hosts\n")
        run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(clone / ".venv")])
        tool = clone / ".venv" / "bin" / "tool"
        tool.write_text(f"#!{clone / '.venv' / 'bin' / 'python'}\n{TOOL}")
        tool.chmod(0o755)
        hosts_dir = clone / "runs" / "r" / "hosts"
        dirs = HostStateDirs(
            999, ["h1"], run_folder / "state", hosts_dir, run_folder,
            code=[clone, clone / ".venv", Path(sys.base_prefix)],
        )  # fmt: skip
        dirs.create()
        (hosts_dir / "h1" / "own.txt").write_text("h1's own\n")
        uid = dirs.uid("h1")
        os.chown(hosts_dir / "h1" / "own.txt", uid, uid)
        confined = (
            f"setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all "
            f"--bounding-set=-all --no-new-privs {sys.base_prefix}/bin/python3 -c "
            f"'{CLOSED_PROBE}' {clone} {run_folder / 'state'} {hosts_dir} {closed / 'secret.txt'}"
        )
        script = "\n".join([*dirs.mount_commands("h1"), confined])
        probe = run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", script])
        seen = json.loads(probe.stdout)
        assert seen == {
            "uid": uid,
            "tool": f"{clone / '.venv'} clone",
            "own": "h1's own",
            "hosts_dir_listing": [],
            "secret": "FileNotFoundError",
            "writes_code": False,
        }
        assert our_mounts(closed) == []  # nothing mounted in the root namespace
    finally:
        shutil.rmtree(closed)
