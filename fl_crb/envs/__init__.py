"""Environments for outside RL libraries: the MEC simulator behind standard interfaces.

`MECParallelEnv` is a PettingZoo `ParallelEnv` (one agent per terminal); it needs the
`env` extra (`pip install 'fl-crb[env]'`).
"""

from fl_crb.envs.parallel_env import MECParallelEnv

__all__ = ["MECParallelEnv"]
