"""Run Flower's SuperNode with a shorter wait between pulls than its fixed 3 s.

Flower 1.42's SuperNode loop (`flwr.supernode.start_client_internal`) pulls the SuperLink
for a message, and when none is waiting sleeps `time.sleep(3)` before the next pull; it
also polls its own state every 0.5 s for the ClientApp's reply. Neither is configurable
(no flag, no environment variable), so a message waits 1.5 s on average, up to 3 s,
before a SuperNode even sees it, and its reply another 0.25 s on average before the
SuperNode sends it. This entry point caps the idle sleep at `--idle-poll-s` and the
shorter waits for a reply at `--reply-poll-s` (a look at the SuperNode's own in-memory
state, no request: cheap) by replacing the loop module's `time` with a proxy whose
`sleep` is capped, wakes its `warm_executor` as soon as it has stored a message (so the
ClientApp starts without waiting for the executor's task poll), turns on timestamps in
Flower's log (its "Receiving"/"Sending" lines
then say when the node pulled each message and sent each reply:
`benchmarks/round_breakdown.py`), then runs the stock `flower-supernode` command line
unchanged:

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

REPLY_POLL_S = 0.05
"""`--reply-poll-s`'s default: the SuperNode's look for its ClientApp's reply (Flower's
own is 0.5 s)."""
FLOWER_IDLE_SLEEP_S = 3.0
"""The SuperNode loop's idle sleep; its other sleeps (0.5 s) wait for a reply."""


class _CappedSleepTime:
    """Stands in for the `time` module: everything forwarded, `sleep` capped (the idle
    sleep at `idle_cap_s`, the waits for a reply at `reply_cap_s`)."""

    def __init__(self, idle_cap_s: float, reply_cap_s: float):
        self.idle_cap_s, self.reply_cap_s = idle_cap_s, reply_cap_s

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        cap_s = self.idle_cap_s if seconds >= FLOWER_IDLE_SLEEP_S else self.reply_cap_s
        time.sleep(min(seconds, cap_s))


class _WakingState:
    """Stands in for the SuperNode's state in its message loop: everything forwarded, and
    `store_message` also wakes the node's warm executor. The loop stores a message (its
    metadata: the ClientApp can fetch it) before it pulls the message's content, so the
    ClientApp starts (and sets up) while the content comes. Not earlier: at
    `create_task` the message is not stored yet, and a ClientApp that asks for it then
    gets none and never replies (the node would hang on that message)."""

    def __init__(self, state, wake_executor):
        self._state, self._wake_executor = state, wake_executor

    def __getattr__(self, name: str):
        return getattr(self._state, name)

    def store_message(self, *args, **kwargs):
        stored = self._state.store_message(*args, **kwargs)
        self._wake_executor()
        return stored


def install(idle_poll_s: float, reply_poll_s: float = REPLY_POLL_S) -> None:
    """Cap the SuperNode loop's idle sleep at `idle_poll_s` and its waits for a reply at
    `reply_poll_s`, timestamp Flower's log lines; refuse unsupported Flower versions."""
    for flag, seconds in (("--idle-poll-s", idle_poll_s), ("--reply-poll-s", reply_poll_s)):
        if not 0.001 <= seconds <= FLOWER_IDLE_SLEEP_S:
            raise ValueError(f"{flag} must lie in 0.001..3 seconds, got {seconds}")
    require_supported(FAST_SUPERNODE)
    import flwr.supernode.start_client_internal as loop
    from flwr.common.logger import update_console_handler
    from flwr.supercore.utils import get_flwr_home

    from fl_crb.federation.accelerators.warm_executor import wake

    if "time.sleep(3)" not in inspect.getsource(loop):
        raise RuntimeError("flwr's SuperNode loop no longer sleeps time.sleep(3): patch refused")
    loop.time = _CappedSleepTime(idle_poll_s, reply_poll_s)
    pull_and_store = loop._pull_and_store_message
    home = get_flwr_home()

    def pull_and_store_waking(*, state, **kwargs):
        return pull_and_store(state=_WakingState(state, lambda: wake(home)), **kwargs)

    loop._pull_and_store_message = pull_and_store_waking
    update_console_handler(timestamps=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `--idle-poll-s S -- <flower-supernode arguments>` and run the SuperNode."""
    parser = argparse.ArgumentParser(prog="python -m fl_crb.federation.accelerators.fast_supernode")
    parser.add_argument("--idle-poll-s", type=float, required=True)
    parser.add_argument("--reply-poll-s", type=float, default=REPLY_POLL_S)
    parser.add_argument("supernode_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = args.supernode_args[1:] if args.supernode_args[:1] == ["--"] else args.supernode_args
    install(args.idle_poll_s, args.reply_poll_s)
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()
    return 0


if __name__ == "__main__":
    sys.exit(main())
