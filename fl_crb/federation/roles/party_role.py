"""What `fl-crb edge` and `fl-crb terminal` share: the bundle, the state directory, the service.

A party host's command reads as named steps (`edge_role`, `terminal_role`): load its
bundle → fetch the run's settings → start its processes → measure its clock offset and
say hello → wait for the epoch and pass it on → wait for the end of the run → stop →
report. `PartyHost` holds what those steps share: the checked bundle (its host name and
role), the state directory's folders, and the run service's client with this party's
request signer.

State directory S (everything the role writes, nothing another host reads):

    S/settings.json       the run's settings as fetched (and the progress then)
    S/topology.yaml       the run's topology, from the settings' text
    S/config/, S/logs/    each process's config and log
    S/party/              the runtime party's summary and task log (a terminal's
                          <host>.tasks.jsonl), the learner's summary (an edge's)
    S/mailbox/            the mailbox its SuperNode's handlers share with its party
    S/flower/             the SuperNode's FLWR_HOME and logs (`launcher`)
    S/processes.json      every command line started
    S/summary.json        what this party did, as reported to the authority
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.roles.clock_offset import ClockOffset, flagged
from fl_crb.federation.roles.service_client import ServiceClient, ServiceError
from fl_crb.federation.roles.settings import FINISHED, RunProgress, RunSettings, settings_json
from fl_crb.federation.roles.signed_requests import RequestSigner
from fl_crb.runtime.config import RunSpec
from fl_crb.runtime.party import write_json

POLL_S = 0.5
"""Seconds between looks at the run's progress before the run (the edges, the epoch)."""
FINISH_POLL_S = 2.0
"""Seconds between looks for the end of the run: nothing waits on it but this party's
stop, and every look costs the authority's host a TLS handshake and a signature check
while it drains its last rounds."""
FINISH_WAIT_S = 600.0
"""After its runtime party ends, how long a party waits for the authority to finish its
last rounds (its SuperNode stays up meanwhile) before it stops anyway."""


@dataclass(frozen=True)
class PartyRoleConfig:
    """One `fl-crb edge` or `fl-crb terminal`."""

    role: Literal["edge", "terminal"]
    bundle: Path
    """This host's bundle (DIR/<host>/ of `fl-crb keys`): its host name comes from it."""
    state_dir: Path
    """Where everything this host writes goes."""
    authority: str
    """HOST[:PORT] of the authority's run service."""
    listen: str = "0.0.0.0"
    """An edge's runtime server listens here."""
    runtime_port: int = 9310
    """An edge's runtime server port (0: a free port)."""
    advertise: str | None = None
    """The address terminals reach an edge's runtime server at; None: this host's address
    on its connection to the authority."""
    give_up_s: float = 600.0
    """How long to retry an unreachable authority before giving up."""


class PartyHost:
    """A party host's bundle, state directory and run-service client."""

    def __init__(self, config: PartyRoleConfig, say: Callable[[str], None]) -> None:
        self.config = config
        self.say = say
        self.state_dir = Path(config.state_dir).resolve()
        for sub in ("config", "logs", "party", "mailbox"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.bundle_path = Path(config.bundle).resolve()
        self.bundle = HostBundle.load(self.bundle_path, role=config.role)
        self.host = self.bundle.host
        self.client = ServiceClient(
            config.authority, self.bundle.ca_certificate, self.note, config.give_up_s
        )
        self.signer = RequestSigner(self.host, None, self.supernode_key)
        """Signs this party's requests; for the run's id once the settings gave it."""
        self.settings: RunSettings | None = None
        self.offset: ClockOffset | None = None

    def note(self, text: str) -> None:
        """One line, naming this party."""
        self.say(f"{self.config.role} {self.host}: {text}")

    @property
    def supernode_key(self) -> Path:
        return self.bundle_path / "supernodes" / f"{self.host}.key"

    async def fetch_settings(self) -> tuple[RunSettings, RunProgress]:
        """The run's settings (kept in S/settings.json); the signer for this run."""
        self.note(f"fetching the run's settings from {self.client.address}")
        settings, progress = await asyncio.to_thread(self.client.settings, self.signer)
        write_json(self.state_dir / "settings.json", settings_json(settings, progress))
        self.settings = settings
        self.signer = RequestSigner(self.host, settings.upload_run_id_hex, self.supernode_key)
        return settings, progress

    async def settings_as(self, role: Literal["edge", "terminal"]) -> tuple[RunSettings, RunSpec]:
        """The run's settings and spec, once this host is checked to be one of the run's
        topology's `role`s; ValueError naming the bundle otherwise."""
        settings, _ = await self.fetch_settings()
        spec = settings.run_spec(self.state_dir)
        topology = spec.topology()
        names = topology.edge_names if role == "edge" else topology.terminal_names
        if self.host not in names:
            article = "an" if role == "edge" else "a"
            raise ValueError(
                f"{self.bundle_path}: {self.host} is not {article} {role} of the run's "
                f"topology (its {role}s: {names})"
            )
        priority = spec.realtime_priority
        if priority is not None and not may_take_realtime(priority):
            raise ValueError(
                f"{self.host}: the run's parties take real-time priority {priority} (the "
                "authority's --realtime), which this user may not: run this command as "
                f"root, or raise its RLIMIT_RTPRIO to {priority} (limits.conf `rtprio`, "
                f"`prlimit --rtprio={priority}`), or start the authority without --realtime"
            )
        return settings, spec

    async def progress(self) -> RunProgress:
        return (await asyncio.to_thread(self.client.settings, self.signer))[1]

    async def wait_for(
        self,
        ready: Callable[[RunProgress], bool],
        what: str,
        timeout_s: float,
        poll_s: float = POLL_S,
    ) -> RunProgress:
        """Poll the run's progress every `poll_s` until `ready`; RuntimeError naming
        `what` after timeout."""
        give_up = time.monotonic() + timeout_s
        while not ready(progress := await self.progress()):
            if time.monotonic() > give_up:
                raise RuntimeError(f"{self.host}: no {what} from the authority in {timeout_s:g} s")
            await asyncio.sleep(poll_s)
        return progress

    async def hello(self, extra: dict | None = None) -> float:
        """Measure the clock offset, say hello (signed); the epoch, once chosen."""
        self.offset = await asyncio.to_thread(self.client.clock_offset)
        assert self.settings is not None
        if flagged(self.offset.offset_s, self.settings.slot_s):
            self.note(
                f"WARNING: this clock is {self.offset.offset_s * 1e3:+.1f} ms off the "
                f"authority's, more than a tenth of a slot ({self.settings.slot_s * 100:g} ms): "
                "synchronise the clocks (NTP or PTP, docs/deployment.md)"
            )
        body = {
            "kind": "hello",
            "role": self.config.role,
            "clock": dataclasses.asdict(self.offset),
            **(extra or {}),
        }
        reply = await asyncio.to_thread(self.client.signed, "/hello", body, self.signer)
        epoch = json.loads(reply)["epoch_unix_s"]
        if epoch is None:
            self.note("said hello; waiting for the authority's start quorum")
            progress = await self.wait_for(
                lambda p: p.epoch_unix_s is not None, "epoch", self.config.give_up_s
            )
            epoch = progress.epoch_unix_s
        return float(epoch)

    async def wait_until_finished(self) -> bool:
        """Wait until the authority is done with its last rounds; False if it stays
        unreachable or unfinished for `FINISH_WAIT_S`."""
        try:
            await self.wait_for(
                lambda p: p.phase == FINISHED, "end of the run", FINISH_WAIT_S, FINISH_POLL_S
            )
        except (RuntimeError, ServiceError) as error:
            self.note(f"stopping without the authority's end of run: {error}")
            return False
        return True

    async def report(self, report: dict) -> None:
        """Write S/summary.json and send the report to the authority (signed)."""
        summary = {"host": self.host, "role": self.config.role, **report}
        summary["flower"] = read_json(self.state_dir / "flower" / "flower.json")  # which path ran
        if self.offset is not None:
            summary["clock"] = dataclasses.asdict(self.offset)
        write_json(self.state_dir / "summary.json", summary)
        body = {"kind": "report", "report": summary}
        try:
            await asyncio.to_thread(self.client.signed, "/report", body, self.signer)
        except ServiceError as error:
            self.note(f"report not delivered ({error}); it is in S/summary.json")


CAP_SYS_NICE_BIT = 23
"""CAP_SYS_NICE's bit in /proc/self/status's CapEff (linux/capability.h)."""


def may_take_realtime(priority: int) -> bool:
    """Whether this process's children may take SCHED_FIFO at `priority`: root,
    CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least `priority`."""
    if os.geteuid() == 0:
        return True
    limit = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    if limit == resource.RLIM_INFINITY or limit >= priority:
        return True
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE_BIT & 1)
    return False


def read_json(path: Path) -> dict:
    """A JSON file's object, {} if it is missing (a party that died wrote none)."""
    return json.loads(path.read_text()) if path.exists() else {}
