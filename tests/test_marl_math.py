"""The learning baselines' core mathematics on small hand-made inputs."""

import numpy as np
import pytest
import torch

from fl_crb.learn.features import FeatureScale
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.marl.decentralized_ac import DecentralizedAC
from fl_crb.marl.jodrl_pp import JODRLPP, others_actions
from fl_crb.marl.mappo import ValueNorm, clipped_surrogate
from fl_crb.marl.qmix import MonotonicMixer, cem_action
from fl_crb.marl.rollout import Rollout, collect_episode, gae
from fl_crb.mec.simulator import MECSimulator
from fl_crb.mec.tasklog import TaskRecords
from fl_crb.training.config import TrainConfig
from tests.test_marl_cli import TINY_PARAMS

SMALL = LearnerConfig(hidden=8, lstm_hidden=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_gae_follows_each_terminals_chain_as_computed_by_hand():
    # Rows 0, 2 are terminal A's decisions, rows 1, 3 terminal B's; 2 and 3 are the last.
    reward = np.array([-1.0, -2.0, -3.0, -4.0])
    value = np.array([0.5, 1.0, -0.5, 2.0])
    next_index = np.array([2, 3, 2, 3])
    advantage = gae(reward, value, next_index, gamma=0.9, lam=0.8)
    # δ2 = −3 + 0.9·(−0.5) + 0.5 = −2.95; δ3 = −4 + 1.8 − 2 = −4.2 (last: A = δ)
    # δ0 = −1 − 0.45 − 0.5 = −1.95, A0 = −1.95 + 0.72·(−2.95) = −4.074
    # δ1 = −2 + 1.8 − 1 = −1.2,    A1 = −1.2 + 0.72·(−4.2) = −4.224
    np.testing.assert_allclose(advantage, [-4.074, -4.224, -2.95, -4.2], rtol=1e-6)
    # λ = 0 is one-step TD; λ = γ = 1 is the undiscounted return, bootstrapped by the value
    # of the last decision's own state, minus the value.
    np.testing.assert_allclose(gae(reward, value, next_index, 0.9, 0.0)[:2], [-1.95, -1.2])
    np.testing.assert_allclose(
        gae(reward, value, next_index, 1.0, 1.0)[:2],
        [(-1 - 3 - 0.5) - 0.5, (-2 - 4 + 2.0) - 1.0],
    )


def test_clipped_objective_matches_a_hand_computation_and_its_gradient_is_cut_where_clipped():
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7])
    advantage = torch.tensor([2.0, 2.0, -1.0, -1.0])
    old = torch.zeros(4)
    log_prob = torch.log(ratio).requires_grad_()
    loss = clipped_surrogate(log_prob, old, advantage, clip=0.2)
    # min(ρA, clip(ρ)A): min(3, 2.4) = 2.4; min(1, 1.6) = 1; −1.1; min(−0.7, −0.8) = −0.8
    assert loss.item() == pytest.approx(-(2.4 + 1.0 - 1.1 - 0.8) / 4)
    loss.backward()
    # d/dlog π of −ρA/4 where unclipped, 0 where the clipped term is the minimum.
    np.testing.assert_allclose(log_prob.grad.numpy(), [0.0, -0.25, 0.275, 0.0], rtol=1e-6)


def test_value_norm_standardises_with_the_running_statistics():
    norm = ValueNorm(beta=0.5)
    assert norm.statistics() == (0.0, 1.0)
    norm.update(np.array([2.0, 4.0]))
    norm.update(np.array([6.0, 8.0]))
    # debiased EMA with β 0.5: mean = (0.25·3 + 0.5·7)/0.75, E[x²] = (0.25·10 + 0.5·50)/0.75
    mean, std = norm.statistics()
    assert mean == pytest.approx((0.75 + 3.5) / 0.75)
    assert std == pytest.approx(np.sqrt((2.5 + 25) / 0.75 - mean**2))
    values = np.array([1.0, 5.0])
    np.testing.assert_allclose(norm.denormalize(norm.normalize(values)), values)


def test_qmix_mixer_is_monotonic_in_every_agents_q_and_ignores_masked_agents():
    agents, width = 5, 12
    torch.manual_seed(0)
    mixer = MonotonicMixer(agents, width, embed=8)
    with torch.no_grad():  # weights of both signs, large: the |·| must still hold
        for parameter in mixer.parameters():
            parameter.normal_(0.0, 2.0)
    state = torch.randn(64, width)
    q = torch.randn(64, agents).requires_grad_()
    mask = (torch.rand(64, agents) < 0.7).float()
    total = mixer(q, state, mask)
    (gradient,) = torch.autograd.grad(total.sum(), q)
    assert (gradient >= 0).all()
    assert (gradient[mask == 0] == 0).all()
    with torch.no_grad():
        for d in range(agents):
            for step in (0.1, 1.0, 10.0):
                raised = q.clone()
                raised[:, d] += step
                assert (mixer(raised, state, mask) >= total - 1e-5).all()
        # Non-negative mixing weights: W1 and w2 from |hypernetwork|.
        assert (torch.abs(mixer.hyper_w1(state)) >= 0).all()
        changed = q.clone()
        changed[mask == 0] = 1e3  # a masked agent's value does not matter
        torch.testing.assert_close(mixer(changed, state, mask), total)


def test_cross_entropy_selection_coincides_with_argmax_over_the_discrete_actions():
    rng = np.random.default_rng(0)
    for actions in (2, 5, 9):
        for _ in range(300):
            q = rng.normal(size=actions)
            assert cem_action(q, rng, samples=64, iterations=3, elite=8) == int(np.argmax(q))


def tiny_rollout(algo: str, seed: int = 0) -> tuple[Rollout, object]:
    config = TrainConfig(algo=algo, seed=seed, arrival_slots=60, learner=SMALL)
    terminals = 4
    algorithm = {"decentralized-ac": DecentralizedAC, "jodrl-pp": JODRLPP}[algo](
        config.algorithm_setup(), TINY_PARAMS, terminals
    )
    scale = FeatureScale.from_params(TINY_PARAMS, terminals)

    def act(features, deciders, state):
        return algorithm.act(features, deciders, state, explore=True)

    return collect_episode(MECSimulator(TINY_PARAMS, terminals), scale, 5, 60, act), algorithm


@pytest.mark.parametrize("algo", ["decentralized-ac", "jodrl-pp"])
def test_decentralized_learners_share_no_parameter_and_learn_only_from_their_own_decisions(algo):
    rollout, algorithm = tiny_rollout(algo)
    per_terminal = [
        [*algorithm.actors[d].parameters(), *algorithm.critics[d].parameters()] for d in range(4)
    ]
    storage = [{p.untyped_storage().data_ptr() for p in params} for params in per_terminal]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not storage[a] & storage[b]
    for d, optimizer in enumerate(algorithm.actor_optimizers + algorithm.critic_optimizers):
        owned = {id(p) for p in per_terminal[d % 4]}
        assert all(id(p) in owned for group in optimizer.param_groups for p in group["params"])
    # Keep only one terminal's decisions: every other terminal's networks stay as they were.
    learner = int(np.bincount(rollout.terminal, minlength=4).argmax())
    rows = np.flatnonzero(rollout.terminal == learner)
    assert rows.size >= 2
    renumber = np.full(rollout.decisions, -1)
    renumber[rows] = np.arange(rows.size)
    alone = Rollout(
        slot=rollout.slot[rows],
        terminal=rollout.terminal[rows],
        features=rollout.features[rows],
        action=rollout.action[rows],
        reward=rollout.reward[rows],
        next_index=renumber[rollout.next_index[rows]],
        state=rollout.state[rollout.state_row[rows]],
        state_row=np.arange(rows.size),
        records=rollout.records,
        extras={k: v[rows] for k, v in rollout.extras.items()},
    )
    before = [[p.detach().clone() for p in params] for params in per_terminal]
    algorithm.update(alone)
    for d in range(4):
        same = all(torch.equal(a, b) for a, b in zip(before[d], per_terminal[d], strict=True))
        assert same == (d != learner)


def test_rollout_matches_every_delayed_reward_to_its_decision_and_chains_each_terminal():
    rollout, _ = tiny_rollout("decentralized-ac", seed=1)
    records: TaskRecords = rollout.records
    assert rollout.decisions == len(records)
    by_task = {
        (int(t), int(s)): (int(a), float(-d if not dropped else -36.0))
        for t, s, a, d, dropped in zip(
            records.terminal,
            records.arrival_slot,
            records.action,
            np.nan_to_num(records.delay_slots),
            records.dropped,
            strict=True,
        )
    }
    for i in range(rollout.decisions):
        action, reward = by_task[(int(rollout.terminal[i]), int(rollout.slot[i]))]
        assert rollout.action[i] == action and rollout.reward[i] == reward
        j = rollout.next_index[i]
        assert rollout.terminal[j] == rollout.terminal[i]
        later = np.flatnonzero(rollout.terminal[i + 1 :] == rollout.terminal[i])
        assert j == (i + 1 + later[0] if later.size else i)
    # The joint-action input of JODRL-PP's critics holds the others of the slot, never itself.
    joint = others_actions(rollout, 4, TINY_PARAMS.actions).reshape(rollout.decisions, 4, -1)
    for i in range(rollout.decisions):
        assert joint[i, rollout.terminal[i]].sum() == 0
        same_slot = np.flatnonzero(rollout.slot == rollout.slot[i])
        assert joint[i].sum() == same_slot.size - 1
