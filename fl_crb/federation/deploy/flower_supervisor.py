"""Keeps a deployment's SuperLink and SuperNodes running: one that dies is started again.

A `FlowerSupervisor` watches the processes of a `LocalFederation` (`launcher`) from a
thread of its own once they are all online. The SuperLink or a SuperNode that exits
before the deployment stops (killed, crashed, or stopped by someone else) is started
again with its very command line, through the federation's `restart_superlink` and
`restart_node`, each restart in a thread of its own so that a slow one holds no other
back. A party is restarted at most `max_restarts` times; past that, or when its restart
fails, it is given up (`given_up`, with the reason) and the run goes on without it.

What Flower 1.42 does on such a restart, and what that asks of the deployment:

- A SuperNode comes back under the node id its key was registered with (the SuperLink
  maps the key to the id, even after a restart of its own), so the authority, which
  names nodes by their registered keys, knows it again. But the SuperLink activates a
  registered node only once it counts the node's earlier session offline, i.e. up to
  `HEARTBEAT_PATIENCE` × `HEARTBEAT_DEFAULT_INTERVAL` (2 × 30 s) after the dead
  process's last heartbeat; until then every new process is refused ("Failed to
  activate SuperNode") and exits. So the restart first ends the dead node's session
  the way the node does on a clean exit, `DeactivateNode` signed with its own key
  (`node_session`, with node authentication), and the new process is activated at
  once; without node authentication (no key to sign with) or should that fail, it
  retries until `NODE_SESSION_EXPIRY_S` (plus a margin) has passed. A new key would
  get a new node id at once, but not the old one's name: Flower keeps a key for its
  first node id even after that node is unregistered.
- A SuperLink keeps its registered nodes only with `LaunchConfig.durable_state` (its
  state in an SQLite file); in memory, a restarted SuperLink would refuse every node,
  so one without it is given up at once (`MEMORY_ONLY`). The
  runs it was serving end: the SuperExec and the ServerApps watch their parent and exit
  with it, and the restarted SuperLink marks those runs finished:failed. Starting a new
  run (the authority's supervisor does, `run_support.supervise_authority`, waiting for
  `LocalFederation.serving`) recovers the authority from its durable folder, as after
  its own crash.
- The SuperNodes do not all come back by themselves: under TLS, a node whose request
  was under way when the SuperLink died gets "TLS/SSL connection has been closed (EOF)",
  which Flower 1.42's retry (`supercore.retry.http_retry`) takes for a certificate
  error and gives up on for good: the process lives on, but neither polls nor sends
  heartbeats again. So once the SuperLink serves again, every SuperNode is restarted
  too (`CUT_OFF` is the reason its log line gives), each under its registered id.

Record: logs/flower-supervisor.log in the deployment's folder, one line per restart
(party, restart number, how it had exited, and how the restart went) or given-up
party; `restarts` counts them per party ("superlink" and each node's name).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import TYPE_CHECKING

from flwr.common.constant import HEARTBEAT_DEFAULT_INTERVAL, HEARTBEAT_PATIENCE

from fl_crb.federation.deploy.launch_config import FederationError

if TYPE_CHECKING:
    from fl_crb.federation.deploy.launcher import LocalFederation

SUPERLINK = "superlink"
MEMORY_ONLY = (
    "its state was in memory, so a new SuperLink would refuse every node (durable state is off)"
)
"""Why a SuperLink without `LaunchConfig.durable_state` is not restarted."""
"""The SuperLink's name among the supervised parties (SuperNodes go by their node names)."""
NODE_SESSION_EXPIRY_S = HEARTBEAT_PATIENCE * HEARTBEAT_DEFAULT_INTERVAL
"""How long, at most, the SuperLink counts a dead SuperNode's session online after its
last heartbeat, refusing to activate the node again meanwhile (60 s in Flower 1.42)."""
NODE_RESTART_PATIENCE_S = NODE_SESSION_EXPIRY_S + 15.0
"""How long a SuperNode's restart keeps trying before the node is given up."""
CUT_OFF = (
    "was cut off by the SuperLink's restart (Flower 1.42's SuperNode stops for good after "
    "a TLS connection closed mid-request), so it was killed"
)
"""Why every SuperNode is restarted after the SuperLink."""
WATCH_POLL_S = 0.2
"""Seconds between two looks at the supervised processes."""
_LOG = logging.getLogger(__name__)


class FlowerSupervisor:
    """Restarts the SuperLink and the SuperNodes of one `LocalFederation` that die."""

    def __init__(self, federation: LocalFederation, max_restarts: int) -> None:
        self.federation = federation
        self.max_restarts = max_restarts
        self.processes = dict.fromkeys((SUPERLINK,) if federation.superlink_port else (), SUPERLINK)
        self.processes |= {name: f"node-{name}" for name in federation.node_ids}
        """Process name of each supervised party: the SuperLink if started here, each node."""
        self.restarts: dict[str, int] = dict.fromkeys(self.processes, 0)
        """Restarts so far: "superlink" and each SuperNode by its node name."""
        self.given_up: dict[str, str] = {}
        """Parties no longer restarted, with the reason."""
        self.log_path = federation.run_dir / "logs" / "flower-supervisor.log"
        self._stopping = threading.Event()
        self._restarting: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        """Guards the log file."""
        self._state_lock = threading.Lock()
        """Guards `_restarting` and `given_up` (the watch and the restarts change them)."""
        self._thread = threading.Thread(target=self._watch, name="flower-supervisor", daemon=True)

    def start(self) -> None:
        """Start watching (the SuperLink and every SuperNode must be online)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the restarts under way to give up."""
        self._stopping.set()
        self._thread.join()
        for thread in list(self._restarting.values()):
            thread.join()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_POLL_S):
            for party in self.processes:
                self._begin(party)
                if party != SUPERLINK:
                    self._mind_executor(party)

    def _mind_executor(self, node: str) -> None:
        """Start a node's warm executor again if it exited while its node runs (not
        counted as the node's restart; one line in the log)."""
        executor = f"node-{node}-executor"
        processes = self.federation.processes
        with self._state_lock:
            if node in self._restarting or executor not in processes.names():
                return
            status = processes.exit_status(executor)
            if status is None or processes.exit_status(self.processes[node]) is not None:
                return
            self.federation.restart_executor(node)
        self._write(f"{node}: its warm executor {_exit_reason(status)}; started again")

    def _begin(self, party: str, reason: str | None = None) -> None:
        """Restart `party` in a thread of its own: if it has exited (`reason` None), or
        killing it first for `reason`; not if given up or under restart already."""
        with self._state_lock:
            if party in self.given_up or party in self._restarting:
                return
            if reason is None:
                status = self.federation.processes.exit_status(self.processes[party])
                if status is None:
                    return
            kill_first = reason is not None
            reason = reason or _exit_reason(status)
            thread = threading.Thread(
                target=self._restart, args=(party, reason, kill_first), daemon=True
            )
            self._restarting[party] = thread
            thread.start()

    def _restart(self, party: str, reason: str, kill_first: bool = False) -> None:
        """Start `party` again (or give it up past the limit); one line in the log."""
        try:
            if self._stopping.is_set():
                return
            if self.restarts[party] >= self.max_restarts:
                plural = "" if self.max_restarts == 1 else "s"
                self._given_up(party, f"it {reason} after {self.max_restarts} restart{plural}")
                return
            if party == SUPERLINK and not self.federation.config.durable_state:
                self._given_up(party, f"it {reason}; {MEMORY_ONLY}")
                return
            if kill_first:
                self.federation.processes.kill(self.processes[party])
            self.restarts[party] += 1
            number, started = self.restarts[party], time.monotonic()
            try:
                if party == SUPERLINK:
                    self.federation.restart_superlink()
                    outcome = "serving again; its SuperNodes restart"
                else:
                    node_id = self.federation.restart_node(party, NODE_RESTART_PATIENCE_S)
                    outcome = f"online again as node {node_id}"
            except FederationError as error:
                if not self._stopping.is_set():
                    self._given_up(party, f"it {reason}; its restart {number} failed: {error}")
                return
            seconds = time.monotonic() - started
            self._write(f"{party}: restart {number}: it {reason}; {outcome} after {seconds:.1f} s")
            if party == SUPERLINK:
                for node in self.processes.keys() - {SUPERLINK}:
                    self._begin(node, CUT_OFF)
        finally:
            with self._state_lock:
                self._restarting.pop(party, None)

    def _given_up(self, party: str, reason: str) -> None:
        with self._state_lock:
            self.given_up[party] = reason
        self._write(f"{party}: given up: {reason}")

    def _write(self, line: str) -> None:
        _LOG.warning("%s", line)
        with self._lock, open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def _exit_reason(status: int) -> str:
    """How a process ended, from its exit status: "was killed by SIGKILL", "exited with
    status 1"."""
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def flower_supervision(federation: LocalFederation | None) -> dict[str, object]:
    """The run summary's account of the Flower restarts: `superlink_restarts`,
    `supernode_restarts` (node name → restarts) and `flower_given_up` (party → reason;
    "superlink" or a node name), all zero or empty when nothing supervised them."""
    supervisor = federation.supervisor if federation is not None else None
    restarts = dict(supervisor.restarts) if supervisor is not None else {}
    return {
        "superlink_restarts": restarts.pop(SUPERLINK, 0),
        "supernode_restarts": restarts,
        "flower_given_up": dict(supervisor.given_up) if supervisor is not None else {},
    }
