"""The Q-network's forward pass in numpy alone, for terminals that must not carry torch.

A terminal only evaluates the network its edge server trained: one forward pass per task
it decides. `NumpyQNetwork` computes exactly `fl_crb.learn.qnetwork.QNetwork.forward` from
the same flat weight dict (`weights_to_numpy`'s names and shapes, listed in that module's
docstring), so the weights the federation sends need no conversion and a Raspberry Pi
terminal installs numpy instead of ~700 MB of torch:

- scalar branch: relu(scalars · scalar_fcᵀ + b);
- LSTM over the C rows of the load history, from zero hidden and cell states, PyTorch's
  gate order (input i, forget f, cell g, output o) and equations
  c_t = σ(f)·c_{t−1} + σ(i)·tanh(g), h_t = σ(o)·tanh(c_t), both biases added;
- hidden1 over [scalar features, last h], hidden2, each with ReLU;
- dueling head: Q = V + A − mean(A).

Arithmetic is float64 on float32 weights: a float32 torch model then differs from this
one only by its own rounding (~1e-6 on Q-values of tens), which keeps the two within the
1e-5 the tests demand. The logistic function is written σ(x) = (1 + tanh(x/2)) / 2, which
never overflows; the 1/2 is folded into the i, f and o rows of the LSTM weights when they
are prepared, so each LSTM step costs one `tanh` over all 4·L gates.

Loading weights only checks and keeps them; the arrays the forward pass uses are prepared
at its first call after a load. The simulator trainer gives weights to 25 terminal agents
every `tag` slots and evaluates them elsewhere, so that work would be wasted there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def scalar_width(edges: int, code_bits: int = 0) -> int:
    """Width of the scalar input: η, μcomp, μtran, one queued-bits value per edge, then the
    terminal code if any (`fl_crb.learn.features`)."""
    return 3 + edges + code_bits


def weight_shapes(
    edges: int, hidden: int = 64, lstm_hidden: int = 32, code_bits: int = 0
) -> dict[str, tuple[int, ...]]:
    """Name → shape of every weight a Q-network of these sizes has (`QNetwork`'s
    state-dict names; E = edges, H = hidden, L = lstm_hidden, code_bits = the terminal
    code's width, `fl_crb.learn.features`)."""
    gates = 4 * lstm_hidden
    return {
        "scalar_fc.weight": (hidden, scalar_width(edges, code_bits)),
        "scalar_fc.bias": (hidden,),
        "load_lstm.weight_ih_l0": (gates, edges),
        "load_lstm.weight_hh_l0": (gates, lstm_hidden),
        "load_lstm.bias_ih_l0": (gates,),
        "load_lstm.bias_hh_l0": (gates,),
        "hidden1.weight": (hidden, hidden + lstm_hidden),
        "hidden1.bias": (hidden,),
        "hidden2.weight": (hidden, hidden),
        "hidden2.bias": (hidden,),
        "value_head.weight": (1, hidden),
        "value_head.bias": (1,),
        "advantage_head.weight": (1 + edges, hidden),
        "advantage_head.bias": (1 + edges,),
    }


def check_sizes(
    owner: str, edges: int, history_slots: int, hidden: int, lstm_hidden: int, code_bits: int
) -> None:
    """Refuse network sizes that make no network (either implementation, named `owner`)."""
    if edges < 1 or history_slots < 1 or hidden < 1 or lstm_hidden < 1 or code_bits < 0:
        raise ValueError(
            f"{owner} needs edges, history_slots, hidden and lstm_hidden >= 1 and code_bits "
            f">= 0, got {edges}, {history_slots}, {hidden}, {lstm_hidden}, {code_bits}"
        )


def check_input_shapes(
    scalars_shape: tuple[int, ...],
    load_shape: tuple[int, ...],
    edges: int,
    history_slots: int,
    code_bits: int = 0,
) -> None:
    """Refuse inputs that are not scalars [B, 3+E+code_bits] and load [B, C, E] (either
    network)."""
    batch = scalars_shape[0] if len(scalars_shape) == 2 else -1
    width = scalar_width(edges, code_bits)
    if tuple(scalars_shape) != (batch, width):
        raise ValueError(
            f"scalars must be [B, {width}] for {edges} edges and a {code_bits}-bit terminal "
            f"code, got {tuple(scalars_shape)}"
        )
    if tuple(load_shape) != (batch, history_slots, edges):
        raise ValueError(
            f"load must be [{batch}, {history_slots}, {edges}] "
            f"(batch, history slots, edges), got {tuple(load_shape)}"
        )


@dataclass(frozen=True)
class _Prepared:
    """The weights as the forward pass uses them: float64, transposed to [in, out], the
    LSTM's i, f and o rows halved (σ(x) = (1 + tanh(x/2)) / 2) and its biases summed."""

    scalar_w: np.ndarray
    scalar_b: np.ndarray
    lstm_ih: np.ndarray
    lstm_hh: np.ndarray
    lstm_b: np.ndarray
    hidden1_w: np.ndarray
    hidden1_b: np.ndarray
    hidden2_w: np.ndarray
    hidden2_b: np.ndarray
    head_w: np.ndarray
    """Value column first, then the 1+E advantage columns: one product for both streams."""
    head_b: np.ndarray


class NumpyQNetwork:
    """`QNetwork`'s forward pass for scalars [B, 3+E] and load [B, C, E], in numpy."""

    def __init__(
        self,
        edges: int,
        history_slots: int,
        hidden: int = 64,
        lstm_hidden: int = 32,
        code_bits: int = 0,
    ):
        check_sizes("NumpyQNetwork", edges, history_slots, hidden, lstm_hidden, code_bits)
        self.edges = edges
        self.history_slots = history_slots
        self.hidden = hidden
        self.lstm_hidden = lstm_hidden
        self.code_bits = code_bits
        self._shapes = weight_shapes(edges, hidden, lstm_hidden, code_bits)
        self._weights: dict[str, np.ndarray] | None = None
        self._prepared: _Prepared | None = None

    @property
    def loaded(self) -> bool:
        """Whether weights have been loaded."""
        return self._weights is not None

    def load_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Take weights named and shaped as `weights_to_numpy` makes them.

        Refuses a mapping whose names or shapes differ from this network's (weights for
        another edge count or hidden size), naming what differs. The arrays are kept by
        reference: the sender must not modify them afterwards (weights arrive as fresh
        copies, from the wire or from `weights_to_numpy`).
        """
        missing = sorted(set(self._shapes) - set(weights))
        unexpected = sorted(set(weights) - set(self._shapes))
        if missing or unexpected:
            raise ValueError(
                f"weights do not fit this Q-network: missing {missing}, unexpected {unexpected}"
            )
        for name, shape in self._shapes.items():
            if tuple(np.shape(weights[name])) != shape:
                raise ValueError(
                    f"weight {name!r} has shape {np.shape(weights[name])}, the network needs "
                    f"{shape}; check edges, hidden and lstm_hidden on both sides"
                )
        self._weights = dict(weights)
        self._prepared = None

    def q_values(self, scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
        """Q [B, 1+E] (float64) for scalars [B, 3+E] and load [B, C, E]."""
        self._check_inputs(scalars, load)
        p = self._prepare()
        scalar_features = np.maximum(scalars @ p.scalar_w + p.scalar_b, 0.0)
        hidden = self._lstm_last_hidden(load, p)
        joined = np.concatenate([scalar_features, hidden], axis=1)
        features = np.maximum(joined @ p.hidden1_w + p.hidden1_b, 0.0)
        features = np.maximum(features @ p.hidden2_w + p.hidden2_b, 0.0)
        heads = features @ p.head_w + p.head_b
        value, advantage = heads[:, :1], heads[:, 1:]
        return value + advantage - advantage.mean(axis=1, keepdims=True)

    def q_one(self, scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
        """Q [1+E] for one state: scalars [3+E] and load [C, E]."""
        return self.q_values(np.asarray(scalars)[None], np.asarray(load)[None])[0]

    def _lstm_last_hidden(self, load: np.ndarray, p: _Prepared) -> np.ndarray:
        """h_C [B, L] of the LSTM over load [B, C, E], from zero state."""
        size = self.lstm_hidden
        # Input projections of all C steps in one product: [B, C, 4L].
        inputs = load @ p.lstm_ih + p.lstm_b
        gates = np.tanh(inputs[:, 0])  # first step: h = c = 0, so no recurrent term
        sig = 0.5 + 0.5 * gates
        cell = sig[:, :size] * gates[:, 2 * size : 3 * size]
        hidden = sig[:, 3 * size :] * np.tanh(cell)
        for t in range(1, inputs.shape[1]):
            gates = np.tanh(inputs[:, t] + hidden @ p.lstm_hh)
            sig = 0.5 + 0.5 * gates
            cell = sig[:, size : 2 * size] * cell + sig[:, :size] * gates[:, 2 * size : 3 * size]
            hidden = sig[:, 3 * size :] * np.tanh(cell)
        return hidden

    def _prepare(self) -> _Prepared:
        if self._prepared is not None:
            return self._prepared
        if self._weights is None:
            raise RuntimeError("NumpyQNetwork has no weights; call load_weights first")
        w = {name: np.asarray(array, dtype=np.float64) for name, array in self._weights.items()}
        size = self.lstm_hidden
        # Halve the rows of i, f, o (PyTorch's gate order i, f, g, o); keep g's.
        gate_scale = np.full(4 * size, 0.5)
        gate_scale[2 * size : 3 * size] = 1.0
        lstm_b = (w["load_lstm.bias_ih_l0"] + w["load_lstm.bias_hh_l0"]) * gate_scale
        self._prepared = _Prepared(
            scalar_w=w["scalar_fc.weight"].T.copy(),
            scalar_b=w["scalar_fc.bias"],
            lstm_ih=(w["load_lstm.weight_ih_l0"] * gate_scale[:, None]).T.copy(),
            lstm_hh=(w["load_lstm.weight_hh_l0"] * gate_scale[:, None]).T.copy(),
            lstm_b=lstm_b,
            hidden1_w=w["hidden1.weight"].T.copy(),
            hidden1_b=w["hidden1.bias"],
            hidden2_w=w["hidden2.weight"].T.copy(),
            hidden2_b=w["hidden2.bias"],
            head_w=np.concatenate([w["value_head.weight"], w["advantage_head.weight"]]).T.copy(),
            head_b=np.concatenate([w["value_head.bias"], w["advantage_head.bias"]]),
        )
        return self._prepared

    def _check_inputs(self, scalars: np.ndarray, load: np.ndarray) -> None:
        check_input_shapes(
            scalars.shape, load.shape, self.edges, self.history_slots, self.code_bits
        )
