"""The trusted authority's setup: a JSON file the ServerApp reads (run config authority-config).

Kept apart from `authority` so the coordinator can write it without importing Flower's
ServerApp side; loaded with `fl_crb.runtime.config.load_config`, which checks every field.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_crb.learn.method_config import MethodConfig


@dataclass(frozen=True)
class AuthorityTerminal:
    """A terminal the authority serves."""

    name: str
    """Its topology host name: its SuperNode's `name` and its uploads' terminal id."""
    public_key_hex: str
    """Its static X25519 public key (64 hex digits)."""
    edge: str
    """Host name of the edge that manages it (whose weights it receives)."""


@dataclass(frozen=True)
class AuthorityConfig:
    """The authority's setup (a JSON file named by the run config's authority-config)."""

    state_dir: str
    """Folder of the pool and every record of the authority; reused by a restart."""
    upload_run_id_hex: str
    """The uploads' run id (32 hex digits): the sealed envelopes' AEAD binds it."""
    authority_key_path: str
    """The authority's X25519 private key (PEM, `crypto.save_private_key`)."""
    terminals: tuple[AuthorityTerminal, ...]
    """Every terminal, its public key and managing edge."""
    edges: tuple[str, ...]
    """Edge host names, in the topology's order."""
    history_slots: int
    """C of the trajectories (load history slots)."""
    method: MethodConfig
    """The federation's learning settings; the authority uses the trajectory length n, the
    pool's capacity, familiarity α and training threshold, and the learners' batch size."""
    batches_per_round: int
    """Batches sent to each edge per round, at most (one training step each)."""
    round_period_s: float
    """Seconds from the start of one round to the start of the next."""
    stop_path: str
    """The authority ends (after draining the outboxes) once this file exists."""
    max_uploads_per_collect: int = 256
    """Uploads one collect reply may carry; the rest come next round."""
    node_wait_s: float = 60.0
    """How long to wait for every SuperNode to connect."""
    poll_interval_s: float = 0.05
    """Seconds between pulls for replies."""
    exchange_timeout_s: float = 120.0
    """A round gives up on missing replies after this long."""
    seed: int = 0
    """Seed of the familiarity draws."""
    wire_meter_address: str = ""
    """A `WireMeter`'s control address for wire bytes; empty: not measured."""
