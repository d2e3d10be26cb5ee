"""The torch numerics of a steering run: the reward model, its Bradley–Terry training, and the
destination's gradient ascent. Imported only when a steering run computes.

Determinism: initial weights come from a seed of their own (torch's global generator is left as
it was) and training is full-batch (the memory holds a few hundred pairs at most), so nothing
else is random: a round's result depends only on the run's seed, the round and what is stored.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tracer_pipeline.selfconsuming.training import initialised, load_state, state_bytes

HIDDEN = 64

__all__ = ["RewardModel", "ascend", "initialised", "load_state", "scores", "state_bytes", "train_reward"]


class RewardModel(nn.Module):
    """An action (flattened noise) → a scalar reward: a two-hidden-layer MLP."""

    def __init__(self, dimension: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dimension, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
                                  nn.Linear(HIDDEN, 1))

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        return self.body(actions.flatten(1))[:, 0]


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def scores(model: RewardModel, actions: np.ndarray) -> np.ndarray:
    """The reward of each action, float64."""
    model.eval()
    with torch.inference_mode():
        return model(_tensor(actions)).double().numpy()


def train_reward(model: RewardModel, first: np.ndarray, second: np.ndarray, targets: np.ndarray,
                 epochs: int, learning_rate: float) -> list[float]:
    """Fit P(first ≻ second) = σ(r(first) − r(second)) to ``targets`` (1, 0 or ½) by binary
    cross-entropy, full batch, with a fresh Adam; the loss of each epoch (before its step)."""
    model.train()
    a, b, y = _tensor(first), _tensor(second), _tensor(targets)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for _ in range(epochs):
        loss = F.binary_cross_entropy_with_logits(model(a) - model(b), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.item()))
    model.eval()
    return losses


def ascend(model: RewardModel, start: np.ndarray, epochs: int, learning_rate: float) -> np.ndarray:
    """Gradient ascent on the reward from ``start`` (Adam), each step projected back onto the
    sphere of radius √d, where standard-normal noise of d numbers lies: an action far from it
    is one the generator never saw, and the reward model's extrapolation there is meaningless."""
    radius = float(np.sqrt(start.size))
    action = _tensor(start)[None].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([action], lr=learning_rate)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(epochs):
            loss = -model(action).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                action *= radius / action.norm().clamp(min=1e-12)
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return action.detach()[0].numpy().astype(np.float32)
