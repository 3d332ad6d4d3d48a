"""The reproduction's tables carry every algorithm of the paper's comparison and its orderings."""

from fl_crb.experiments.paper_results import PAPER_NAME_OF, PAPER_VALUES
from fl_crb.experiments.report import sweep_tables
from fl_crb.experiments.settings import BASELINE_POLICIES, LEARNED_POLICIES


def row(policy: str, x: float, failure: float, delay: float) -> dict:
    return {
        "topology": "t",
        "policy": policy,
        "x": x,
        "failure_rate_mean": failure,
        "failure_rate_std": 0.0,
        "avg_delay_s_mean": delay,
        "avg_delay_s_std": 0.0,
        # how much the terminals herd; local-only offloads nothing (NaN)
        "same_slot_coarrivals_mean": float("nan") if policy == "local-only" else 0.25,
        "same_slot_coarrivals_std": float("nan") if policy == "local-only" else 0.0,
    }


def test_every_paper_algorithm_is_reproduced():
    assert set(PAPER_NAME_OF) <= {*BASELINE_POLICIES, *LEARNED_POLICIES}
    assert {v.algorithm for v in PAPER_VALUES} <= set(PAPER_NAME_OF.values())


def test_tables_put_ours_beside_the_papers_and_judge_each_stated_ordering():
    # Figure 6 at 3.0 Mbit/s, failure: the paper has Local-Only 0.37 < Decentralized AC
    # 0.52; these rows reverse that pair and keep JODRL-PP < Local-Only.
    rows = [
        row("local-only", 3.0, 0.30, 0.80),
        row("decentralized-ac", 3.0, 0.10, 0.70),
        row("jodrl-pp", 3.0, 0.05, 0.70),
        row("multi-tier", 3.0, 0.05, 0.71),
        row("crb-drqn", 3.0, 0.06, 0.72),
    ]
    text = sweep_tables(rows, "fig6", "rate")
    assert "| 3 | — | 0.25±0.00 | 0.25±0.00 | 0.25±0.00 | 0.25±0.00 |" in text  # co-arrivals
    assert "| failure_rate | 3 | 0.052 | jodrl-pp (reconstruction" in text
    assert "0.050±0.000" in text and "multi-tier (reconstruction; decides" in text
    assert "| failure_rate | 3 | Local-Only < Decentralized AC | differs: " in text
    assert "| failure_rate | 3 | JODRL-PP < Local-Only | matches: JODRL-PP < Local-Only |" in text
    # Within half a point of failure is a tie: 0.052 against 0.057 is; 0.05 against 0.06 not.
    assert "| failure_rate | 3 | JODRL-PP ≈ CRB-DRQN | differs: JODRL-PP < CRB-DRQN |" in text
    assert "not run" in text  # the delay at 1.0 Mbit/s, say, was not in these rows
    assert "t: " in text and "orderings match the paper's." in text
