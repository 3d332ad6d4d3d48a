"""A `flwr` CLI call made ready ahead of time: Flower's CLI imported now, run when told.

    python -m fl_crb.federation.deploy.standby_cli ARGUMENTS...

imports `flwr.cli.app` (2-3 s of imports on an idle core, up to ~9 s on a loaded one),
then waits for one line on stdin: "go" runs `flwr ARGUMENTS...` in this process, exactly
as the `flwr` command would, and exits with its status; anything else (or stdin
closing) exits 0 without running it. The authority's supervisor keeps one `flwr run`
standing by (`flower_cli.FlowerCli.run(..., standby_next=True)`), so that the new run
after an authority or SuperLink death is submitted without paying those imports.
"""

from __future__ import annotations

import sys

MODULE = "fl_crb.federation.deploy.standby_cli"
GO = "go"
"""The line that makes it run."""


def main() -> int:
    from flwr.cli.app import app  # the slow part, done while standing by

    if sys.stdin.readline().strip() != GO:
        return 0
    sys.argv = ["flwr", *sys.argv[1:]]
    try:
        app()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
