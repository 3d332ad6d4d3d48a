"""What a live terminal knows of the edges: the LOAD reports, turned into its observation.

Each edge sends every terminal a LOAD report per slot t: Q_e(t) and the terminal's own
queued bits q_{d,e}(t). For a task arriving in slot t the simulator's observation holds
Q_e(t−C) … Q_e(t−1) and q_{d,e}(t−1) (zeros before slot 0); the edge sends slot t − 1's
report at the start of slot t − 1, so it normally arrives a whole slot before it is
needed. If a report is missing when the terminal decides (a late or lost frame), the
terminal uses the newest earlier one it has and counts the observation as stale: the
departure is visible in the party's summary rather than hidden.
"""

from __future__ import annotations

import numpy as np

from fl_crb.mec.observation import TerminalObservation
from fl_crb.runtime.protocol import LoadReport


class LoadBoard:
    """LOAD reports of every edge, by slot, for the last `history_slots` slots."""

    def __init__(self, edges: int, history_slots: int) -> None:
        self.edges = edges
        self.history_slots = history_slots
        self._reports: list[dict[int, LoadReport]] = [{} for _ in range(edges)]
        self.stale_observations = 0
        """Observations built while some edge's report of the previous slot was missing."""

    def report(self, edge: int, report: LoadReport) -> None:
        """Keep an edge's report, forgetting the one that just left the history window."""
        reports = self._reports[edge]
        reports[report.slot] = report
        reports.pop(report.slot - self.history_slots - 2, None)

    def observe(
        self, slot: int, task_bits: float, local_wait_slots: int, uplink_wait_slots: int
    ) -> TerminalObservation:
        """The observation of a task arriving in `slot`, as the simulator builds it."""
        first = slot - self.history_slots
        load = np.zeros((self.history_slots, self.edges), dtype=np.int64)
        queued = np.zeros(self.edges)
        stale = False
        for edge, reports in enumerate(self._reports):
            if slot > 0 and slot - 1 not in reports:
                stale = True
            latest: LoadReport | None = None
            earlier = [s for s in reports if s < first]
            if earlier:
                latest = reports[max(earlier)]
            for row, past in enumerate(range(first, slot)):
                latest = reports.get(past, latest)
                if past >= 0 and latest is not None:
                    load[row, edge] = latest.active_queues
            if slot > 0 and latest is not None:
                queued[edge] = latest.queued_bits
        self.stale_observations += stale
        return TerminalObservation(
            task_bits=task_bits,
            local_wait_slots=local_wait_slots,
            uplink_wait_slots=uplink_wait_slots,
            edge_queue_bits=queued,
            load_history=load,
        )
