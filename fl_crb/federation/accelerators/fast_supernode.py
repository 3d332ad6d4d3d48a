"""Run Flower's SuperNode with a shorter wait between pulls than its fixed 3 s.

Flower 1.42's SuperNode loop (`flwr.supernode.start_client_internal`) pulls the SuperLink
for a message, and when none is waiting sleeps `time.sleep(3)` before the next pull; it
also polls its own state every 0.5 s for the ClientApp's reply. Neither is configurable
(no flag, no environment variable), so a message waits 1.5 s on average, up to 3 s,
before a SuperNode even sees it. This entry point caps every sleep of that loop at
`--idle-poll-s` by replacing the loop module's `time` with a proxy whose `sleep` is
capped, then runs the stock `flower-supernode` command line unchanged:

    python -m fl_crb.federation.accelerators.fast_supernode --idle-poll-s 0.05 -- --insecure \
        --superlink 127.0.0.1:8000 --port 9094 --node-config 'role="edge" name="e1"'

The price is more pull requests (each node pulls 1/idle-poll-s times a second; each
costs the SuperLink a little CPU and ~0.5 kB on the wire). It patches a private module,
so it refuses any Flower but `accelerators.SUPPORTED_FLOWER` (the launcher does not start
it then: it runs the stock `flower-supernode`).

(The other wait on that path, the SuperExec's poll for new tasks, is configurable:
`FLWR_SUPEREXEC_TASK_POLL_INTERVAL`, 0.01–60 s, default 1 s; the launcher sets it.)
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Sequence

from fl_crb.federation.accelerators import FAST_SUPERNODE, require_supported


class _CappedSleepTime:
    """Stands in for the `time` module: everything forwarded, `sleep` capped."""

    def __init__(self, cap_s: float):
        self.cap_s = cap_s

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.cap_s))


def install(idle_poll_s: float) -> None:
    """Cap the SuperNode loop's sleeps at `idle_poll_s`; refuse unsupported Flower versions."""
    if not 0.001 <= idle_poll_s <= 3:
        raise ValueError(f"--idle-poll-s must lie in 0.001..3 seconds, got {idle_poll_s}")
    require_supported(FAST_SUPERNODE)
    import flwr.supernode.start_client_internal as loop

    if "time.sleep(3)" not in inspect.getsource(loop):
        raise RuntimeError("flwr's SuperNode loop no longer sleeps time.sleep(3): patch refused")
    loop.time = _CappedSleepTime(idle_poll_s)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `--idle-poll-s S -- <flower-supernode arguments>` and run the SuperNode."""
    parser = argparse.ArgumentParser(prog="python -m fl_crb.federation.accelerators.fast_supernode")
    parser.add_argument("--idle-poll-s", type=float, required=True)
    parser.add_argument("supernode_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.supernode_args[1:] if args.supernode_args[:1] == ["--"] else args.supernode_args
    install(args.idle_poll_s)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
