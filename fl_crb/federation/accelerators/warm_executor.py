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
"""

from __future__ import annotations

import importlib
import os
import sys

from fl_crb.federation.accelerators import WARM_EXECUTOR, require_supported

PRELOADED_MODULES = ("flwr.supernode.runtime.run_clientapp", "fl_crb.federation.client_app")
"""Imported once in the parent so forked ClientApps start without importing them."""


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
    """Make `run_superexec` use the fork executor; preload what ClientApps import."""
    require_supported(WARM_EXECUTOR)
    from flwr.supercore.constant import ExecutorType
    from flwr.supercore.superexec import run_superexec

    stock = run_superexec.get_executor
    fork_executor = _fork_executor_class()

    def get_executor(executor_type, executor_config=None, **kwargs):
        if executor_type == ExecutorType.SUBPROCESS:
            return fork_executor()
        return stock(executor_type, executor_config, **kwargs)

    run_superexec.get_executor = get_executor
    for module in PRELOADED_MODULES:
        importlib.import_module(module)


def main() -> None:
    """`flower-superexec` with the fork executor; same arguments."""
    install()
    from flwr.supercore.cli.flower_superexec import flower_superexec

    sys.argv[0] = "flower-superexec"
    flower_superexec()


if __name__ == "__main__":
    main()
