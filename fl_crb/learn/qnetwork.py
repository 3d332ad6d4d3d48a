"""The CRB-DRQN Q-network: scalar branch + LSTM over the load history + dueling head.

    scalars [B, 3+E(+code)] ─ Linear ─ ReLU ──────────┐
                                               ├─ concat ─ Linear ─ ReLU ─ Linear ─ ReLU ─┐
    load [B, C, E] ── LSTM over C rows, last h ┘                                          │
                                                     Q [B, 1+E] = V + A − mean(A)  ◄──────┘
                                                     V = value_head, A = advantage_head

Weights travel as a flat `dict[str, np.ndarray]` (`weights_to_numpy`): the federation sends
it, and the numpy-only forward pass of the Raspberry Pi terminals reads exactly these names:

| name                                   | shape                  |
| -------------------------------------- | ---------------------- |
| scalar_fc.weight, scalar_fc.bias       | [H, 3+E], [H]          |
| load_lstm.weight_ih_l0                 | [4·L, E]               |
| load_lstm.weight_hh_l0                 | [4·L, L]               |
| load_lstm.bias_ih_l0, bias_hh_l0       | [4·L], [4·L]           |
| hidden1.weight, hidden1.bias           | [H, H+L], [H]          |
| hidden2.weight, hidden2.bias           | [H, H], [H]            |
| value_head.weight, value_head.bias     | [1, H], [1]            |
| advantage_head.weight, .bias           | [1+E, H], [1+E]        |

H = `hidden`, L = `lstm_hidden`. The LSTM stacks its gates in PyTorch's order (input, forget,
cell, output) and starts from zero hidden and cell states; `hidden1` reads the scalar
branch's H features first, then the LSTM's last hidden state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fl_crb.learn.numpy_qnetwork import check_input_shapes, check_sizes, scalar_width


class QNetwork(nn.Module):
    """Maps one terminal's observation to the Q-values of its 1+E actions."""

    def __init__(
        self,
        edges: int,
        history_slots: int,
        hidden: int = 64,
        lstm_hidden: int = 32,
        code_bits: int = 0,
    ):
        super().__init__()
        check_sizes("QNetwork", edges, history_slots, hidden, lstm_hidden, code_bits)
        self.edges = edges
        self.history_slots = history_slots
        self.code_bits = code_bits
        """Width of the terminal code ending the scalars (0: the paper's state)."""
        self.scalar_fc = nn.Linear(scalar_width(edges, code_bits), hidden)
        self.load_lstm = nn.LSTM(input_size=edges, hidden_size=lstm_hidden, batch_first=True)
        self.hidden1 = nn.Linear(hidden + lstm_hidden, hidden)
        self.hidden2 = nn.Linear(hidden, hidden)
        self.value_head = nn.Linear(hidden, 1)
        self.advantage_head = nn.Linear(hidden, 1 + edges)
        self._tensors_by_name: dict[str, torch.Tensor] | None = None

    def value_and_advantage(
        self, scalars: torch.Tensor, load: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The dueling streams: state value V [B, 1] and action advantages A [B, 1+E]."""
        self._check_inputs(scalars, load)
        scalar_features = torch.relu(self.scalar_fc(scalars))
        _, (last_hidden, _) = self.load_lstm(load)  # last_hidden: [1, B, L]
        joined = torch.cat([scalar_features, last_hidden[0]], dim=1)
        features = torch.relu(self.hidden1(joined))
        features = torch.relu(self.hidden2(features))
        return self.value_head(features), self.advantage_head(features)

    def forward(self, scalars: torch.Tensor, load: torch.Tensor) -> torch.Tensor:
        """Q [B, 1+E] = V + A − mean(A) for scalars [B, 3+E] and load [B, C, E]."""
        value, advantage = self.value_and_advantage(scalars, load)
        return value + advantage - advantage.mean(dim=1, keepdim=True)

    def tensors_by_name(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by state-dict name. Cached: terminals reload weights every
        `tag` slots and walking the module tree each time cost more than the copies."""
        if self._tensors_by_name is None:
            self._tensors_by_name = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        return self._tensors_by_name

    def _check_inputs(self, scalars: torch.Tensor, load: torch.Tensor) -> None:
        check_input_shapes(
            tuple(scalars.shape), tuple(load.shape), self.edges, self.history_slots, self.code_bits
        )


def weights_to_numpy(net: QNetwork) -> dict[str, np.ndarray]:
    """A copy of the network's parameters as a flat name → float32 array mapping."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in net.state_dict().items()}


def load_numpy_weights(net: QNetwork, weights: dict[str, np.ndarray]) -> None:
    """Overwrite the network's parameters with `weights` (as made by `weights_to_numpy`).

    Refuses a mapping whose names or shapes differ from the network's, which is what a
    terminal receiving weights for another edge count or hidden size would see.
    """
    expected = net.tensors_by_name()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit this QNetwork: missing {missing}, unexpected {unexpected}"
        )
    for name, tensor in expected.items():
        if tuple(np.shape(weights[name])) != tuple(tensor.shape):
            raise ValueError(
                f"weight {name!r} has shape {np.shape(weights[name])}, the network needs "
                f"{tuple(tensor.shape)}; check edges, hidden and lstm_hidden on both sides"
            )
    # In-place copies: terminals reload weights every `tag` slots, and this is ~10x
    # cheaper than load_state_dict while leaving the same values in the same tensors.
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(torch.from_numpy(np.asarray(weights[name], dtype=np.float32)))
