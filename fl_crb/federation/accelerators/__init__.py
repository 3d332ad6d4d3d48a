"""Optional accelerators: patches of Flower's internals that shorten its fixed waits.

- `fast_supernode`: Flower's SuperNode with a shorter idle poll than its fixed 3 s.
- `warm_executor`: ClientApp processes forked from a warm parent instead of started anew.

They patch private Flower modules that may change in any release, so they are used only
with the Flower they were read against, `SUPPORTED_FLOWER`; this module is the one place
that decides (`check`). The federation's behaviour does not depend on them, only its
speed: stock Flower runs the same rounds, more slowly (see `benchmarks/federated_rounds.py
--accelerators both` for how much).

Flower 1.42 offers no supported mechanism for either: the SuperNode's idle wait is a
literal `time.sleep(3)`, and `flwr-clientapp` serves exactly one task (a token) and exits,
so `--isolation process` only moves the SuperExec out of the SuperNode; it still starts a
fresh `flwr-clientapp` per message (Flower's warm executor pools are for Kubernetes and
other task types). The one supported knob on that path, the SuperExec's task poll
(`FLWR_SUPEREXEC_TASK_POLL_INTERVAL`), is set on the stock path too.

`deploy.flower_commands` starts them when `LaunchConfig.supernode_idle_poll_s` and
`LaunchConfig.warm_clientapps` ask for them, `LaunchConfig.accelerators` allows them
(`fl-crb federate --no-accelerators` does not) and `check()` finds the supported Flower;
otherwise it runs stock `flower-supernode` with Flower's own ClientApp processes and logs
one line saying which accelerators are off and why.

This module imports nothing of Flower: it reads the installed version from the package
metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

SUPPORTED_FLOWER = "1.42.0"
"""The `flwr` release whose private modules the accelerators were read against."""
FAST_SUPERNODE = "fast_supernode"
"""`accelerators.fast_supernode`: the SuperNode's idle poll shortened."""
WARM_EXECUTOR = "warm_executor"
"""`accelerators.warm_executor`: ClientApps forked from a warm parent."""


def installed_flower() -> str | None:
    """The installed `flwr` version, None if `flwr` is not installed."""
    try:
        return metadata.version("flwr")
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class FlowerCheck:
    """Whether the accelerators may run with the installed Flower, and why not."""

    version: str | None
    """The installed `flwr` version (None: not installed)."""

    @property
    def available(self) -> bool:
        """Whether the installed Flower is the one the accelerators were written for."""
        return self.version == SUPPORTED_FLOWER

    @property
    def reason(self) -> str:
        """Why they are unavailable ("" when available)."""
        if self.available:
            return ""
        found = "flwr is not installed" if self.version is None else f"flwr {self.version}"
        return f"{found} is installed; they patch flwr {SUPPORTED_FLOWER} internals only"


def check() -> FlowerCheck:
    """The installed Flower, checked against `SUPPORTED_FLOWER`."""
    return FlowerCheck(installed_flower())


def available() -> bool:
    """Whether the accelerators may run with the installed Flower."""
    return check().available


def require_supported(accelerator: str) -> None:
    """RuntimeError unless the installed Flower is the supported one (each accelerator's
    own entry point calls this before patching anything)."""
    found = check()
    if not found.available:
        raise RuntimeError(
            f"{accelerator}: {found.reason}; run the stock Flower path instead "
            "(fl-crb federate --no-accelerators, LaunchConfig(accelerators=False))"
        )


def off_notice(requested: tuple[str, ...], allowed: bool, found: FlowerCheck) -> str:
    """The one line logged when `requested` accelerators do not run: which and why."""
    why = "turned off (--no-accelerators / accelerators=False)" if not allowed else found.reason
    return (
        f"Flower accelerators off ({', '.join(requested)}): {why}; running stock Flower "
        "(flower-supernode's 3 s idle poll, a fresh flwr-clientapp per message)"
    )
