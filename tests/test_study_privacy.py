"""Noise on uploads (mechanism and accounting), the observation table, the study end to end."""

import csv
import math

import numpy as np
import pytest
import torch

from fl_crb.learn.pool import Trajectory
from fl_crb.studies.heterogeneity import Heterogeneity
from fl_crb.studies.noisy_training import NoisyUploads
from fl_crb.studies.observation_table import DESIGNS, observations
from fl_crb.studies.privacy_study import PrivacyStudyConfig, run_privacy_study
from fl_crb.studies.upload_noise import (
    PrivacyAccountant,
    UploadNoise,
    UploadNoiseConfig,
    zcdp_epsilon,
)
from fl_crb.training.config import TrainConfig
from fl_crb.training.schemes import CentralScheme

torch.set_num_threads(1)  # the machine's cores are shared; the networks are small


def _chained(n: int = 4, c: int = 3, e: int = 2, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed)
    scalars = rng.random((n + 1, 3 + e)).astype(np.float32)
    load = rng.random((n + 1, c, e)).astype(np.float32)
    return Trajectory(
        scalars=scalars[:n],
        load=load[:n],
        action=rng.integers(0, 1 + e, n),
        reward=-rng.integers(1, 12, n).astype(np.float32),
        next_scalars=scalars[1:],
        next_load=load[1:],
        done=np.zeros(n, dtype=bool),
    )


def test_accounting_matches_a_hand_computed_case():
    # ρ = 0.5 per upload, 2 uploads: ρ = 1; δ = e^-4: ε = 1 + 2·sqrt(1·4) = 5.
    accountant = PrivacyAccountant(0.5)
    accountant.record(3)
    accountant.record(3)
    accountant.record(1)
    assert accountant.rho(3) == 1.0
    assert accountant.epsilon(3, math.exp(-4)) == pytest.approx(5.0)
    assert accountant.epsilon(1, math.exp(-4)) == pytest.approx(0.5 + 2 * math.sqrt(0.5 * 4))
    assert accountant.epsilons(5, math.exp(-4))[[0, 2, 4]].tolist() == [0.0, 0.0, 0.0]
    assert zcdp_epsilon(0.0, 1e-5) == 0.0
    with pytest.raises(ValueError, match="delta"):
        zcdp_epsilon(1.0, 0.0)


def test_noise_calibration_matches_a_hand_computed_case():
    # ρ = 2, half to the floats: ρ_values = 1, Δ = 2C = 2: σ = 2/sqrt(2).
    config = UploadNoiseConfig(rho_per_upload=2.0, clip_l2=1.0, action_share=0.5)
    assert config.sigma() == pytest.approx(math.sqrt(2))
    # ρ_actions = 1 over n = 4 actions: 4·ε_a²/2 = 1, ε_a = sqrt(1/2).
    assert config.action_epsilon(4) == pytest.approx(math.sqrt(0.5))
    with pytest.raises(ValueError, match="rho_per_upload"):
        UploadNoiseConfig(rho_per_upload=math.inf)
    with pytest.raises(ValueError, match="action_share"):
        UploadNoiseConfig(rho_per_upload=1.0, action_share=1.0)


def test_mechanism_clips_adds_noise_and_keeps_trajectories_chained():
    trajectory = _chained()
    rng = np.random.default_rng(1)
    # Almost no noise: the output is the input scaled down to the clip norm.
    quiet = UploadNoise(UploadNoiseConfig(1e12, clip_l2=0.5, reward_scale=10.0), edges=2)
    out = quiet(trajectory, rng)
    vector = np.concatenate(
        [
            np.concatenate([out.scalars, out.next_scalars[-1:]]).ravel(),
            np.concatenate([out.load, out.next_load[-1:]]).ravel(),
            out.reward / 10.0,
        ]
    )
    assert np.linalg.norm(vector) == pytest.approx(0.5, rel=1e-4)
    assert np.array_equal(out.action, trajectory.action)  # ε_a huge: kept
    # Real noise: values move, the chain is kept, rewards stay in range.
    noisy = UploadNoise(UploadNoiseConfig(0.1), edges=2)(trajectory, rng)
    assert np.array_equal(noisy.next_scalars[:-1], noisy.scalars[1:])
    assert np.array_equal(noisy.next_load[:-1], noisy.load[1:])
    assert not np.allclose(noisy.scalars, trajectory.scalars, atol=1.0)
    assert noisy.reward.min() >= -36.0 and noisy.reward.max() <= 0.0
    with pytest.raises(ValueError, match="chained"):
        broken = Trajectory(**{**trajectory.__dict__, "next_scalars": trajectory.scalars})
        UploadNoise(UploadNoiseConfig(1.0), edges=2)(broken, rng)


def test_randomised_response_keeps_an_action_with_the_stated_probability():
    noise = UploadNoise(UploadNoiseConfig(rho_per_upload=1.0, action_share=0.5), edges=4)
    actions = np.zeros(200_000, dtype=np.int64)
    out = noise.randomised_actions(actions, np.random.default_rng(2))
    epsilon = noise.config.action_epsilon(actions.size)
    expected = math.exp(epsilon) / (math.exp(epsilon) + 4)
    assert (out == 0).mean() == pytest.approx(expected, abs=0.005)
    assert set(np.unique(out[out != 0])) == {1, 2, 3, 4}


def test_noisy_uploads_perturb_and_count_what_reaches_the_central_pool():
    scheme = CentralScheme(TrainConfig(), edges=2, history_slots=3, managing_edge=[0, 1, 0])
    accountant = PrivacyAccountant(1.0)
    wrapper = NoisyUploads(
        scheme, UploadNoise(UploadNoiseConfig(1.0), 2), accountant, np.random.default_rng(0)
    )
    original = _chained()
    wrapper.upload([(0, original), (2, _chained(seed=1)), (0, _chained(seed=2))])
    assert len(scheme.pool) == 3
    stored = scheme.pool.state_dict()
    assert np.array_equal(stored["scalars"][0], wrapper.uploaded[0][1].scalars)
    assert not np.allclose(stored["scalars"][0], original.scalars, atol=1.0)
    assert [d for d, _ in wrapper.uploaded] == [0, 2, 0]
    assert accountant.uploads == {0: 2, 2: 1}
    assert wrapper.group_of.tolist() == [0, 1, 0]  # everything else is the scheme's


def test_observation_table_follows_from_the_flows():
    sealed = observations("crb-drqn (this design)")
    plain = observations("uploads without encryption")
    alone = observations("independent learning, no uploads")
    link = "which terminal a trajectory came from"
    # Sealing hides upload contents from the SuperLink, not the batches sent to edges.
    assert sealed["SuperLink operator"]["trajectory contents"] == "sampled batches, no ids"
    assert plain["SuperLink operator"]["trajectory contents"] == "all terminals'"
    assert (sealed["SuperLink operator"][link], plain["SuperLink operator"][link]) == (
        "no (ids stripped)",
        "yes",
    )
    assert sealed["authority"][link] == "yes"
    for design in DESIGNS:  # edges never get identities with trajectories; TLS hides contents
        table = observations(design)
        assert table["edge server"][link] in ("no", "no (ids stripped)")
        assert table["network observer, TLS"]["trajectory contents"] == "no"
        assert table["edge server"]["offloaded task data"] == "offloaders'"
    assert alone["authority"]["trajectory contents"] == "no"
    # weights reach terminals from their edge over plain TCP: TLS on Flower does not hide them
    assert sealed["network observer, TLS"]["Q-network weights"] == "yes"
    # a relaying edge carries sealed uploads: it sees their sizes and timing, not contents
    relay = observations("crb-drqn, relay uplink")
    assert "upload handed to the edge" in relay["edge server"]["sizes and timing"]
    assert "upload handed to the edge" not in sealed["edge server"]["sizes and timing"]
    assert relay["edge server"]["trajectory contents"] == "sampled batches, no ids"
    assert relay["SuperLink operator"]["trajectory contents"] == "sampled batches, no ids"
    assert alone["terminal"]["trajectory contents"] == "own"
    with pytest.raises(ValueError, match="unknown design"):
        observations("nonexistent")


def test_privacy_study_end_to_end_at_toy_scale(tmp_path):
    config = PrivacyStudyConfig(
        topology="topologies/tiny.yaml",
        terminals=4,
        link_episodes=1,
        arrival_slots=800,
        heterogeneity=(Heterogeneity("identical", 0.0), Heterogeneity("strong", 0.7)),
        models=("logistic",),
        noise_levels=(None, 1.0),
        train_episodes=6,
        epsilon_decay_episodes=3,
        evaluation_episodes=1,
    )
    summary = run_privacy_study(tmp_path, config, progress=lambda _: None)
    for name in (
        "observation-table.csv",
        "observation-table.md",
        "linkability.csv",
        "linkability.png",
        "noise-price.csv",
        "noise-price.png",
        "summary.md",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "linkability.csv") as file:
        rows = list(csv.DictReader(file))
    assert {(r["setting"], r["identity"]) for r in rows} == {
        ("identical", "stripped"),
        ("identical", "visible"),
        ("strong", "stripped"),
        ("strong", "visible"),
    }
    with open(tmp_path / "noise-price.csv") as file:
        price = {r["policy"] + r["rho_per_upload"]: r for r in csv.DictReader(file)}
    exact, noisy = price["crb-drqninf"], price["crb-drqn1.0"]
    assert float(exact["epsilon_max"]) == math.inf and float(exact["chain_linked"]) > 0.5
    assert 0 < float(noisy["epsilon_median"]) < math.inf and float(noisy["chain_linked"]) == 0.0
    assert {"random", "least-loaded"} <= {r["policy"] for r in price.values()}
    assert "Linkability" in summary.read_text()
