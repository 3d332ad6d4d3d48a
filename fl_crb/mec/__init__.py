"""The slotted MEC simulator (model.md): parameters, the slot engine, trace replay."""

from fl_crb.mec.observation import Observations, TerminalObservation
from fl_crb.mec.params import MECParams, TerminalArrays
from fl_crb.mec.replay import ReplayResult, replay
from fl_crb.mec.simulator import MECSimulator, SlotEvents
from fl_crb.mec.tasklog import TaskLog, TaskRecords

__all__ = [
    "MECParams",
    "MECSimulator",
    "Observations",
    "ReplayResult",
    "SlotEvents",
    "TaskLog",
    "TaskRecords",
    "TerminalArrays",
    "TerminalObservation",
    "replay",
]
