"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module's tests. These small networks run fastest on one
    thread; on the shared 2-core machine a second thread mostly spins (a trainer test took
    50 s with two, 3 s with one). A module opts in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _closed_to_other_users() -> str | None:
    """The first folder above the checkout that users other than its owner cannot enter,
    or None: processes confined to an emulated host's own user run the code from here."""
    import os
    import stat
    from pathlib import Path

    for folder in Path(__file__).resolve().parent.parents:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return str(folder)
    return None


needs_code_readable_by_all = pytest.mark.skipif(
    _closed_to_other_users() is not None,
    reason=f"{_closed_to_other_users()} is closed to other users: confined host users "
    "cannot run the code (chmod o+x it)",
)
"""For tests that run processes as an emulated host's own user."""
