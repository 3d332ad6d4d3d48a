"""Where a live CRB-DRQN run starts from: a trained run folder or a weights file.

A live run (`fl-crb run-local`, `emulate`) acts with weights files, and a federated run
(`fl-crb federate`) starts its edge learners from them; both accept a training run of
`fl-crb train --algo crb-drqn` as well, whatever network widths it was trained with:

- `start_widths(start)`: the widths (hidden, lstm_hidden) of the start's networks: a
  trained run's from its run.json, a weights file's from its arrays;
- `resolve_widths(start, hidden, lstm_hidden)`: the widths a run from `start` uses:
  the start's, and explicit ones (flags) only where they agree with it;
- `edge_weights_files(start, params, folder)`: one weights file per edge: a trained run's
  per-edge evaluation networks (the validated best, else the last checkpoint) exported
  into `folder`, or the weights file itself for every edge.

Errors name the command line's `--policy` and its value, where the start came from.
"""

from __future__ import annotations

from pathlib import Path

from fl_crb.learn.numpy_qnetwork import weight_shapes
from fl_crb.learn.weights_file import network_widths, read_weights_file, save_weights_file
from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import TrainedRun, WeightsFile
from fl_crb.training.config import TrainConfig
from fl_crb.training.run import read_setup

Start = TrainedRun | WeightsFile
"""What a live run can start from."""


def trained_crb_drqn(run: TrainedRun) -> TrainConfig:
    """The setup of a training run that live terminals can act with: CRB-DRQN (one
    network per edge) without terminal codes (which a live terminal does not have)."""
    config = TrainConfig.from_dict(read_setup(run.path)["config"])
    if config.algo != "crb-drqn":
        raise ValueError(
            f"--policy {run.describe()}: trained {config.algo}; a live or federated run "
            "starts from a crb-drqn run (one network per edge)"
        )
    if config.learner.terminal_code_bits:
        raise ValueError(
            f"--policy {run.describe()}: trained with {config.learner.terminal_code_bits}-bit "
            "terminal codes, a simulation-only input live terminals do not have"
        )
    return config


def _weights(start: WeightsFile) -> dict:
    try:
        return read_weights_file(Path(start.path))[0]
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"--policy {start.describe()}: not a weights file: {error}") from None


def start_widths(start: Start) -> tuple[int, int]:
    """(hidden, lstm_hidden) of the start's networks."""
    if isinstance(start, TrainedRun):
        learner = trained_crb_drqn(start).learner
        return learner.hidden, learner.lstm_hidden
    return network_widths(_weights(start), f"--policy {start.describe()}")


def resolve_widths(start: Start, hidden: int | None, lstm_hidden: int | None) -> tuple[int, int]:
    """The widths of a run from `start`: the start's; `hidden` and `lstm_hidden` (None:
    not given) must agree with them, else the error names both."""
    widths = start_widths(start)
    for flag, given, held in zip(
        ("--hidden", "--lstm-hidden"), (hidden, lstm_hidden), widths, strict=True
    ):
        if given is not None and given != held:
            raise ValueError(
                f"{flag} {given} does not fit --policy {start.describe()}, whose networks have "
                f"--hidden {widths[0]} and --lstm-hidden {widths[1]}; leave {flag} out to take "
                "the starting weights' widths"
            )
    return widths


def edge_weights_files(start: Start, params: MECParams, folder: Path) -> list[str]:
    """One weights file (`save_weights_file` format) per edge of the system `params`
    describes, checked to fit its edges and load history (absolute paths)."""
    if isinstance(start, WeightsFile):
        weights = _weights(start)
        hidden, lstm_hidden = network_widths(weights, f"--policy {start.describe()}")
        expected = weight_shapes(params.edges, hidden, lstm_hidden)
        shapes = {name: tuple(array.shape) for name, array in weights.items()}
        if shapes != expected:
            raise ValueError(
                f"--policy {start.describe()}: its network does not fit {params.edges} edges "
                f"(shapes {shapes}, expected {expected})"
            )
        return [str(Path(start.path).resolve())] * params.edges
    return _export_trained_run(start, params, folder)


def _export_trained_run(run: TrainedRun, params: MECParams, folder: Path) -> list[str]:

    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
    from fl_crb.training.checkpoint import load_networks, read_torch_file
    from fl_crb.training.run import read_best, read_trained_system
    from fl_crb.training.trained_policy import best_way_back

    config = trained_crb_drqn(run)
    try:
        read_trained_system(run.path, params)
    except ValueError as error:
        raise ValueError(f"--policy {run.describe()}: {error}") from None
    directory = Path(run.path)
    if read_best(directory) is not None:
        best = directory / "best.pt"
        states = read_torch_file(best, "best validated weights", best_way_back(best))
    else:
        states = [saved["evaluation"] for saved in load_networks(directory / "checkpoint")]
    if len(states) != params.edges:
        raise ValueError(
            f"--policy {run.describe()}: {len(states)} edge networks, the topology has "
            f"{params.edges} edges"
        )
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for e, state in enumerate(states):
        network = QNetwork(
            params.edges, params.history_slots, config.learner.hidden, config.learner.lstm_hidden
        )
        network.load_state_dict(state)
        files.append(str((folder / f"start-weights-edge{e + 1}.npz").resolve()))
        save_weights_file(files[-1], weights_to_numpy(network), 0)
    return files
