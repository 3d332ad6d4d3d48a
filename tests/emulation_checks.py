"""Checks the emulator's end-to-end tests share."""

from __future__ import annotations

from tests.test_emulation_network import leftovers


def run_leftovers(network: dict) -> list[str]:
    """What of an emulation run is still on the machine (processes in its hosts'
    namespaces, its run slot's bridges, firewall chains, delay daemon or state file),
    from the run's network record: `EmulationReport.network`, emulation.json's "network"."""
    return leftovers(network["run_slot"], set(network["host_namespaces"].values()))
