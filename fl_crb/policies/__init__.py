"""Offloading policies: the non-learning baselines and the common policy interface."""

from fl_crb.policies.base import Policy
from fl_crb.policies.baselines import BASELINES, make_baseline

__all__ = ["BASELINES", "Policy", "make_baseline"]
