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
