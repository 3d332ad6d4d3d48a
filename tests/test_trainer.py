"""The simulator trainer: wiring, both learning schemes, checkpoints, seeds, ε schedule."""

from pathlib import Path

import numpy as np
import pytest

from fl_crb.learn.edge_learner import EdgeLearner, LearnerConfig
from fl_crb.learn.pool import FIELDS, TrajectoryBatch
from fl_crb.learn.stacked import LearnerStack
from fl_crb.topology import load_topology
from fl_crb.training.checkpoint import load_checkpoint, save_checkpoint
from fl_crb.training.config import (
    EVALUATION_SEED_BASE,
    TrainConfig,
    evaluation_seed,
    training_seed,
)
from fl_crb.training.drqn_trainer import Trainer
from tests.trajectories import random_batches

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_config(**overrides) -> TrainConfig:
    """Small networks and short episodes, so a test trains in about a second."""
    values = dict(
        arrival_slots=30,
        learner=LearnerConfig(
            hidden=16, lstm_hidden=8, target_update_steps=10, batch_trajectories=2
        ),
        min_pool_trajectories=2,
        train_interval_slots=1,
        epsilon_decay_episodes=4,
    )
    values.update(overrides)
    return TrainConfig(**values)


def tiny_trainer(**overrides) -> Trainer:
    topology = load_topology(TOPOLOGIES / "tiny.yaml").with_overrides(arrival_rate_bps=6e6)
    return Trainer(topology.mec_params(), topology.terminal_count, small_config(**overrides))


def test_crb_drqn_trains_edge_learners_from_the_central_pool():
    trainer = tiny_trainer()
    metrics = [trainer.run_episode() for _ in range(3)]
    assert [m.episode for m in metrics] == [0, 1, 2]
    assert [m.epsilon for m in metrics] == [trainer.config.epsilon(k) for k in range(3)]
    assert all(m.tasks > 0 and m.avg_reward < 0 for m in metrics)
    pool = trainer.scheme.pool
    assert metrics[-1].pool_trajectories == len(pool) > 4
    assert sum(m.train_steps for m in metrics) > 0
    # Both edges trained, every step counted as a version.
    steps = sum(m.train_steps for m in metrics)
    assert [learner.version for learner in trainer.scheme.learners] == [steps // 2] * 2
    # Terminals follow their managing edge (round robin over 2 edges).
    np.testing.assert_array_equal(trainer.scheme.group_of, [0, 1, 0, 1])


def test_every_decision_of_an_episode_reaches_the_pool_as_a_transition():
    trainer = tiny_trainer(min_pool_trajectories=10_000)  # no training: count only
    trainer.run_episode()
    tasks = len(trainer.simulator.log)
    uploaded = len(trainer.scheme.pool) * trainer.config.trajectory_length
    waiting = sum(
        a.builder.complete_transitions + 1 for a in trainer.agents if a.builder.pending_rewards == 0
    )
    # Each terminal's last decision awaits its successor; fewer than n wait to be cut.
    assert uploaded + waiting == tasks


def test_independent_drqn_keeps_each_terminals_experience_to_itself():
    trainer = tiny_trainer(algo="independent-drqn")
    sizes_by_terminal: list[set] = [set() for _ in range(4)]
    for _ in range(3):
        trainer.run_episode()
        records = trainer.simulator.log.records()
        for d in range(4):
            mine = records.size_bits[records.terminal == d] / 1e6
            sizes_by_terminal[d] |= set(mine.astype(np.float32).tolist())
    assert len(trainer.scheme.learners) == len(trainer.scheme.pools) == 4
    np.testing.assert_array_equal(trainer.scheme.group_of, np.arange(4))
    # Every state in terminal d's pool is one of d's own tasks (sizes name tasks).
    for d, pool in enumerate(trainer.scheme.pools):
        stored = set(pool.state_dict()["scalars"][:, :, 0].ravel().tolist())
        assert stored and stored <= sizes_by_terminal[d]
    assert all(learner.version > 0 for learner in trainer.scheme.learners)


def test_training_together_steps_exactly_like_separate_train_steps():
    configs = [
        LearnerConfig(hidden=16, lstm_hidden=8, target_update_steps=3, seed=s) for s in (4, 7)
    ]
    together = [EdgeLearner(2, 3, config) for config in configs]
    stack = LearnerStack(together)
    separate = [EdgeLearner(2, 3, config) for config in configs]
    rng = np.random.default_rng(0)
    for step in range(8):
        batch = random_batches(rng, learners=2)
        own = [
            TrajectoryBatch(**{name: getattr(batch, name)[k] for name in FIELDS}) for k in (0, 1)
        ]
        if step == 5:  # a plain train_step in between carries on from the shared state
            for k in (0, 1):
                assert together[k].train_step(own[k]) == pytest.approx(
                    separate[k].train_step(own[k]), rel=1e-4
                )
            continue
        active = np.array([True, step % 3 != 1])  # learner 1 sits out some steps
        losses = stack.train_step(batch, active)
        for k in np.flatnonzero(active):
            assert losses[k] == pytest.approx(separate[k].train_step(own[k]), rel=1e-4)
        assert np.isnan(losses[~active]).all()
    for a, b in zip(together, separate, strict=True):
        assert a.version == b.version
        for name, array in b.weights().items():
            np.testing.assert_allclose(a.weights()[name], array, atol=1e-5)
            target = b.target.state_dict()[name].numpy()
            np.testing.assert_allclose(a.target.state_dict()[name].numpy(), target, atol=1e-5)
        square_avg = [b.optimizer.state[p]["square_avg"] for p in b.evaluation.parameters()]
        ours = [a.optimizer.state[p]["square_avg"] for p in a.evaluation.parameters()]
        for x, y in zip(ours, square_avg, strict=True):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("algo", ["crb-drqn", "independent-drqn"])
def test_checkpoint_round_trip_resumes_the_same_run(tmp_path: Path, algo: str):
    trainer = tiny_trainer(algo=algo)
    for _ in range(2):
        trainer.run_episode()
    save_checkpoint(trainer, tmp_path / "checkpoint")
    expected = [trainer.run_episode() for _ in range(2)]

    resumed = tiny_trainer(algo=algo)
    load_checkpoint(resumed, tmp_path / "checkpoint")
    assert resumed.episode == 2
    got = [resumed.run_episode() for _ in range(2)]
    assert sum(m.train_steps for m in got) > 0
    for a, b in zip(expected, got, strict=True):
        assert (a.avg_reward, a.loss, a.train_steps, a.pool_trajectories) == (
            b.avg_reward,
            b.loss,
            b.train_steps,
            b.pool_trajectories,
        )
    for group in range(len(trainer.scheme.learners)):
        expected_weights, version = trainer.scheme.weights(group)
        got_weights, got_version = resumed.scheme.weights(group)
        assert version == got_version
        for name, array in expected_weights.items():
            np.testing.assert_array_equal(array, got_weights[name])


def test_checkpoint_of_another_setup_is_refused(tmp_path: Path):
    trainer = tiny_trainer()
    trainer.run_episode()
    save_checkpoint(trainer, tmp_path / "checkpoint")
    with pytest.raises(ValueError, match="algo"):
        load_checkpoint(tiny_trainer(algo="independent-drqn"), tmp_path / "checkpoint")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tiny_trainer(), tmp_path / "elsewhere")


def test_interrupted_checkpoint_write_falls_back_to_the_previous_one(tmp_path: Path):
    trainer = tiny_trainer()
    trainer.run_episode()
    save_checkpoint(trainer, tmp_path / "checkpoint")
    # A crash between the two renames leaves only the previous checkpoint, as `.old`.
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    resumed = tiny_trainer()
    load_checkpoint(resumed, tmp_path / "checkpoint")
    assert resumed.episode == 1


def test_epsilon_decays_geometrically_from_one_to_the_floor():
    config = TrainConfig(epsilon_decay_episodes=100)
    assert config.epsilon(0) == 1.0
    assert config.epsilon(50) == pytest.approx(0.1)
    assert config.epsilon(100) == pytest.approx(0.01)
    assert config.epsilon(1000) == pytest.approx(0.01)


def test_training_and_evaluation_seeds_never_meet():
    largest_training = training_seed(999_999, 999_999)
    assert largest_training < EVALUATION_SEED_BASE == evaluation_seed(0, 0)
    assert evaluation_seed(3, 2) == EVALUATION_SEED_BASE + 3_000_002
    with pytest.raises(ValueError, match="seed must lie"):
        training_seed(-1, 0)
    with pytest.raises(ValueError, match="episode index"):
        evaluation_seed(0, 10**6)


def test_bad_configs_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'"):
        TrainConfig(algo="dqn")
    with pytest.raises(ValueError, match="min_pool_trajectories"):
        TrainConfig(min_pool_trajectories=3)
    with pytest.raises(ValueError, match="refresh_slots"):
        TrainConfig(refresh_slots=0)
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"algo": "crb-drqn", "tag": 3})
    assert TrainConfig.from_dict(small_config().to_dict()) == small_config()
