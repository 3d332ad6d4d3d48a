"""Start each ClientApp by forking a warm process instead of launching a fresh interpreter.

For every message, Flower's SuperExec starts `flwr-clientapp` as a new Python process,
which spends about 1 s of CPU importing Flower (and the app) before the handler runs;
measured on loopback this is the largest part of a message's round trip once the polls
are short. This module runs the stock `flower-superexec` command line with one change:
its executor forks ClientApp processes from a parent that has already imported
`flwr.supernode.runtime.run_clientapp` and the app's module. Each forked child runs
exactly what `flwr-clientapp` runs (`run_clientapp` with the task's token), so Flower
still sees one process per message, with its own state, exit status and heartbeat.

Use it with a SuperNode started with `--isolation process` (which then starts no
SuperExec of its own), pointing at that SuperNode's Runtime API:

    python -m fl_crb.federation.accelerators.warm_executor --insecure \
        --runtime-api-address 127.0.0.1:9094 --parent-pid <SuperNode pid>

It relies on Flower's executor interface (`flwr.supercore.superexec.executor`) and on
`run_superexec` looking `get_executor` up in its own module, so it refuses any Flower but
`accelerators.SUPPORTED_FLOWER` (the launcher does not start it then: the SuperNode runs
with its stock SuperExec). Tasks other than ClientApps (none on a SuperNode)
are started as usual by subprocess.

Woken, not only polling: the SuperExec asks its SuperNode for a task every
`FLWR_SUPEREXEC_TASK_POLL_INTERVAL` seconds (a message waited half of that on average
before its ClientApp started). This executor writes its pid to `WAKE_PID_FILE` in its
FLWR_HOME (the SuperNode's too) and sleeps between polls in `sigtimedwait` for
`WAKE_SIGNAL`, which the `fast_supernode` sends it as soon as it has stored a message
(`wake`), so the ClientApp starts at once; the poll remains as the fallback.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import signal
import sys
from pathlib import Path

from fl_crb.federation.accelerators import WARM_EXECUTOR, require_supported

PRELOADED_MODULES = (
    "flwr.supernode.runtime.run_clientapp",
    "fl_crb.federation.client_app",
    "fl_crb.federation.host_bundle",
)
"""Imported once in the parent so forked ClientApps start without importing them (the
handlers import the key bundle's modules, and with them the cryptography library, only
when a terminal's `collect` needs them)."""


WAKE_SIGNAL = signal.SIGUSR1
"""What the SuperNode sends its warm executor when a task is waiting."""
WAKE_PID_FILE = "warm-executor.pid"
"""In FLWR_HOME: the pid of the executor serving that home's SuperNode."""
MODULE = "fl_crb.federation.accelerators.warm_executor"


class _WakeableTime:
    """Stands in for `run_superexec`'s `time`: its sleep between task polls ends early when
    `WAKE_SIGNAL` comes (blocked in this process, taken by `sigtimedwait`)."""

    def __getattr__(self, name: str):
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        signal.sigtimedwait([WAKE_SIGNAL], seconds)


def all_threads_block(signum: int) -> bool:
    """Whether every thread of this process blocks `signum` (/proc/self/task/*/status). A
    thread that does not would take the wake-up signal, whose default action ends the
    process: an executor publishes its pid only when none does."""
    bit = 1 << (signum - 1)
    try:
        for status in Path("/proc/self/task").glob("*/status"):
            for line in status.read_text().splitlines():
                if line.startswith("SigBlk:") and not int(line.split()[1], 16) & bit:
                    return False
    except OSError:
        return False
    return True


def wake(flwr_home: Path) -> bool:
    """Wake the warm executor serving `flwr_home` (the SuperNode's side); False when
    there is none (no pid file, or its pid is not a warm executor: never signalled)."""
    try:
        pid = int((flwr_home / WAKE_PID_FILE).read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if MODULE.encode() not in command:  # a stale file: that pid is someone else now
        return False
    try:
        os.kill(pid, WAKE_SIGNAL)
    except OSError:
        return False
    return True


def _fork_executor_class():
    """Build the executor class (Flower is imported here, after the version check)."""
    from flwr.supercore.constant import TaskType
    from flwr.supercore.exit import exit_handler
    from flwr.supercore.superexec.executor import LaunchResult, SubprocessExecutor
    from flwr.supercore.tls import validate_and_resolve_root_certificates
    from flwr.supernode.runtime.run_clientapp import run_clientapp

    class ForkExecutor(SubprocessExecutor):
        """A `SubprocessExecutor` whose ClientApp tasks are forked, not executed anew."""

        def __init__(self) -> None:
            super().__init__()
            self._owner = os.getpid()
            self._children: set[int] = set()

        def launch(self, spec) -> LaunchResult:
            if spec.task_type != TaskType.CLIENT_APP:
                return super().launch(spec)
            certificates = validate_and_resolve_root_certificates(
                spec.root_certificates_path, spec.insecure
            )
            child = os.fork()
            if child == 0:
                status = 1
                try:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, [WAKE_SIGNAL])
                    exit_handler.registered_exit_handlers.clear()  # the parent's, not ours
                    run_clientapp(
                        runtime_api_address=spec.runtime_api_address,
                        token=spec.token,
                        insecure=spec.insecure,
                        certificates=certificates,
                        parent_pid=spec.parent_pid,
                        runtime_dependency_install=spec.runtime_dependency_install,
                    )
                    status = 0
                except SystemExit as done:  # run_clientapp ends through flwr_exit
                    status = done.code if isinstance(done.code, int) else 1
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)
            self._children.add(child)
            return LaunchResult.accepted()

        def reconcile(self) -> None:
            """Reap finished ClientApp children."""
            for child in list(self._children):
                done, _ = os.waitpid(child, os.WNOHANG)
                if done:
                    self._children.discard(child)

        def close(self) -> None:
            if os.getpid() == self._owner:
                self.reconcile()

    return ForkExecutor


def install() -> None:
    """Make `run_superexec` use the fork executor and sleep until woken or its poll is
    due; preload what ClientApps import; publish this pid for the SuperNode's wake-ups."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [WAKE_SIGNAL])  # before Flower starts threads
    require_supported(WARM_EXECUTOR)
    from flwr.supercore.constant import ExecutorType
    from flwr.supercore.superexec import run_superexec
    from flwr.supercore.utils import get_flwr_home

    if "time.sleep(task_poll_interval)" not in inspect.getsource(run_superexec):
        raise RuntimeError("flwr's SuperExec loop no longer sleeps its task poll: patch refused")
    run_superexec.time = _WakeableTime()
    home = get_flwr_home()
    home.mkdir(parents=True, exist_ok=True)
    if all_threads_block(WAKE_SIGNAL):  # else a wake-up would kill this process
        (home / WAKE_PID_FILE).write_text(str(os.getpid()))

    stock = run_superexec.get_executor
    fork_executor = _fork_executor_class()

    def get_executor(executor_type, executor_config=None, **kwargs):
        if executor_type == ExecutorType.SUBPROCESS:
            return fork_executor()
        return stock(executor_type, executor_config, **kwargs)

    run_superexec.get_executor = get_executor
    for module in PRELOADED_MODULES:
        importlib.import_module(module)
    gc.freeze()  # what is loaded now, children never collect: fewer pages copied per fork


def main() -> None:
    """`flower-superexec` with the fork executor; same arguments."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [WAKE_SIGNAL])  # first: no thread may take it
    install()
    from flwr.supercore.cli.flower_superexec import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()


if __name__ == "__main__":
    main()
