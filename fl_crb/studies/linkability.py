"""Linkability: can an edge learner tell which terminal a pooled trajectory came from?

An edge learner receives batches sampled from the authority's pool; over a run it sees
nearly every trajectory (each learner draws 4 per slot while 25 terminals upload about
one every three slots in all). The attack modelled here is a strong passive one: the
edge knows each terminal's earlier trajectories, labelled (e.g. from colluding
terminals, or from a period without identity stripping), and attributes the later ones
it sees. Its accuracy on those later trajectories, against chance (1/D with an equal
number of trajectories per terminal), measures how much the contents alone identify a
terminal.

- Classifier: multinomial logistic regression or a one-hidden-layer MLP (torch, full
  batch Adam, weight decay), on standardised summaries of a trajectory's contents
  (`trajectory_features`).
- With identity (no stripping): the terminal id travels with the trajectory; it is
  appended as a one-hot feature, and the same classifier reads it off (~100 %): every
  trajectory is attributed, and the edge accumulates a profile per terminal.
- Chain linkage (`chain_links`), which stripping cannot remove either: the last next-state
  of a terminal's trajectory is, bit for bit, the first state of its next trajectory.
  Matching them joins anonymous trajectories into per-terminal chains without any
  classifier; noise on uploads (`upload_noise`) breaks the exact match.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fl_crb.learn.pool import TrajectoryBatch
from fl_crb.studies.trajectory_source import LabelledTrajectories

MODELS = ("logistic", "mlp")
"""Classifiers `measure_linkability` can train."""


@dataclass(frozen=True)
class ClassifierConfig:
    """How the attacker's classifier is trained."""

    model: str = "logistic"
    """`logistic` (softmax regression) or `mlp` (one hidden layer of `hidden` ReLUs)."""
    hidden: int = 64
    """Width of the MLP's hidden layer."""
    steps: int = 600
    """Full-batch Adam steps."""
    learning_rate: float = 0.05
    """Adam's step size."""
    weight_decay: float = 1e-4
    """L2 penalty (small: telling apart terminals whose values lie close together needs
    large weights)."""
    test_fraction: float = 0.3
    """Share of each terminal's trajectories held out to measure accuracy (its latest)."""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"ClassifierConfig.model must be one of {MODELS}, got {self.model!r}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(
                f"ClassifierConfig.test_fraction must lie in (0, 1), got {self.test_fraction!r}"
            )


@dataclass(frozen=True)
class LinkabilityResult:
    """Accuracy of the attacker's classifier on held-out trajectories."""

    terminals: int
    """Classes D (terminals with enough trajectories)."""
    per_terminal: int
    """Trajectories used per terminal (the smallest terminal's count)."""
    test_size: int
    """Held-out trajectories the accuracy is measured on."""
    accuracy: float
    """Share of held-out trajectories attributed to the right terminal."""
    chance: float
    """1/D: the accuracy of guessing, classes being balanced."""
    ci_low: float
    """Lower end of the 95 % Wilson interval of the accuracy."""
    ci_high: float
    """Upper end of the 95 % Wilson interval of the accuracy."""
    chained_accuracy: float
    """Accuracy when the attacker first joins trajectories into chains (`chain_links`) and
    gives every held-out trajectory the terminal most likely for its whole chain (the sum
    of the classifier's log-probabilities over the chain's held-out trajectories)."""

    def as_dict(self) -> dict:
        return asdict(self)


def trajectory_features(batch: TrajectoryBatch, edges: int) -> np.ndarray:
    """A trajectory summarised for the classifier: float64 [K, features].

    The minimum, maximum and mean over its n+1 states of each scalar feature (task size,
    waits, queued bits per edge: a terminal's task-size range, for instance, is what
    sets it apart, and is not a linear function of the raw values); the mean broadcast
    load per edge; the share of each action; the rewards' minimum, maximum and mean.
    Raw per-state values were tried and overfit: with C·E load values per state, which
    tell slots apart rather than terminals, a classifier memorises its training rows and
    falls towards chance on held-out ones, even for terminals one feature separates.
    """
    k = batch.size
    actions = np.eye(1 + edges)[batch.action].reshape(k, -1)
    states = np.concatenate([batch.scalars, batch.next_scalars[:, -1:]], axis=1)
    load = np.concatenate([batch.load, batch.next_load[:, -1:]], axis=1).mean(axis=2)
    parts = [
        states.min(axis=1),
        states.max(axis=1),
        states.mean(axis=1),
        load.mean(axis=1),
        actions.reshape(k, -1, 1 + edges).mean(axis=1),
        batch.reward.min(axis=1, keepdims=True),
        batch.reward.max(axis=1, keepdims=True),
        batch.reward.mean(axis=1, keepdims=True),
    ]
    return np.concatenate(parts, axis=1).astype(np.float64)


def balanced_split(
    labels: np.ndarray, test_fraction: float, minimum: int = 5
) -> tuple[np.ndarray, np.ndarray, int]:
    """(train rows, test rows, per-terminal count): the same number of rows per label,
    split in time.

    Every label keeps its first `per_terminal` rows (rows are in upload order), where
    `per_terminal` is the smallest label's count, so chance is exactly 1/D; the earlier
    ones train, the later ones test. A random split would put each held-out trajectory
    next to its predecessor in the training rows, and consecutive trajectories of a
    terminal share slots (load history): the classifier would link by time, which
    `chain_links` measures on its own.
    """
    classes, counts = np.unique(labels, return_counts=True)
    per_terminal = int(counts.min())
    if per_terminal < minimum:
        raise ValueError(
            f"terminal {classes[counts.argmin()]} uploaded only {per_terminal} trajectories; "
            f"the linkability test needs >= {minimum} per terminal: run more episodes"
        )
    test_count = max(1, round(per_terminal * test_fraction))
    train, test = [], []
    for label in classes:
        rows = np.flatnonzero(labels == label)[:per_terminal]
        train.append(rows[: per_terminal - test_count])
        test.append(rows[per_terminal - test_count :])
    return np.concatenate(train), np.concatenate(test), per_terminal


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion."""
    if trials < 1:
        raise ValueError("wilson_interval needs at least one trial")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def fit_and_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    classes: int,
    config: ClassifierConfig,
    seed: int,
) -> np.ndarray:
    """Train the classifier on (x_train, y_train); its log-probabilities [len(x_test), classes]."""
    # Scale by statistics of every trajectory the edge sees (no labels needed), and cap
    # at 10 standard deviations: a feature almost constant in the training rows must not
    # blow up on a held-out row where it is not.
    everything = np.concatenate([x_train, x_test])
    mean, std = everything.mean(axis=0), everything.std(axis=0)
    std[std < 1e-9] = 1.0

    def scaled(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.clip((x - mean) / std, -10.0, 10.0))

    generator = torch.Generator().manual_seed(seed)
    features = x_train.shape[1]
    if config.model == "logistic":
        layers = [torch.nn.Linear(features, classes)]
    else:
        layers = [
            torch.nn.Linear(features, config.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(config.hidden, classes),
        ]
    model = torch.nn.Sequential(*layers).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.01
            )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    inputs = scaled(x_train)
    targets = torch.from_numpy(y_train)
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scores = model(scaled(x_test))
    return torch.log_softmax(scores, dim=1).numpy()


def measure_linkability(
    data: LabelledTrajectories,
    edges: int,
    config: ClassifierConfig | None = None,
    with_identity: bool = False,
    seed: int = 0,
) -> LinkabilityResult:
    """Train the attacker's classifier on part of `data`, measure it on the rest."""
    config = config or ClassifierConfig()
    train, test, per_terminal = balanced_split(data.terminal, config.test_fraction)
    classes, labels = np.unique(data.terminal, return_inverse=True)
    features = trajectory_features(data.batch, edges)
    if with_identity:
        features = np.concatenate([features, np.eye(classes.size)[labels]], axis=1)
    log_probabilities = fit_and_predict(
        features[train], labels[train], features[test], classes.size, config, seed
    )
    predicted = log_probabilities.argmax(axis=1)
    correct = int((predicted == labels[test]).sum())
    low, high = wilson_interval(correct, test.size)
    chain = chain_components(data)[test]
    voted = predicted.copy()
    for component in np.unique(chain):
        members = chain == component
        voted[members] = log_probabilities[members].sum(axis=0).argmax()
    return LinkabilityResult(
        terminals=int(classes.size),
        per_terminal=per_terminal,
        test_size=int(test.size),
        accuracy=correct / test.size,
        chance=1.0 / classes.size,
        ci_low=low,
        ci_high=high,
        chained_accuracy=float((voted == labels[test]).mean()),
    )


@dataclass(frozen=True)
class ChainLinks:
    """How many anonymous trajectories can be joined to their successor by exact match."""

    trajectories: int
    """Trajectories examined."""
    linked: float
    """Share whose last next-state equals the first state of exactly one other trajectory."""
    correct: float
    """Share of those links that join two trajectories of the same terminal (NaN: none)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _successors(batch: TrajectoryBatch) -> np.ndarray:
    """For each trajectory, the only other one whose first state is bit for bit its last
    next-state, or −1 (none, or ambiguous)."""
    first_states: dict[bytes, list[int]] = {}
    for k in range(batch.size):
        key = batch.scalars[k, 0].tobytes() + batch.load[k, 0].tobytes()
        first_states.setdefault(key, []).append(k)
    successor = np.full(batch.size, -1, dtype=np.int64)
    for k in range(batch.size):
        key = batch.next_scalars[k, -1].tobytes() + batch.next_load[k, -1].tobytes()
        matches = [m for m in first_states.get(key, []) if m != k]
        if len(matches) == 1:
            successor[k] = matches[0]
    return successor


def chain_links(data: LabelledTrajectories) -> ChainLinks:
    """Join each trajectory to the one whose first state is bit for bit its last next-state."""
    successor = _successors(data.batch)
    linked = successor >= 0
    same = data.terminal[successor[linked]] == data.terminal[linked]
    return ChainLinks(
        trajectories=len(data),
        linked=float(linked.mean()),
        correct=float(same.mean()) if linked.any() else float("nan"),
    )


def chain_components(data: LabelledTrajectories) -> np.ndarray:
    """Chain id of every trajectory: trajectories joined by `chain_links` share one."""
    parent = np.arange(len(data))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k, successor in enumerate(_successors(data.batch).tolist()):
        if successor >= 0:
            parent[root(k)] = root(successor)
    return np.array([root(k) for k in range(len(data))])
