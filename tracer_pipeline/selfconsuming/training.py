"""The torch numerics of a self-consuming loop: a small VAE, a dense classifier, training,
sampling, and their weights as bytes. Imported only when a self-consuming run computes.

Determinism: every random choice (initial weights, batch order, the VAE's noise, samples) draws
from a ``torch.Generator`` seeded for that purpose alone, never from torch's global state, so a
generation's result depends only on the run's seed, the generation number and what is stored.
Data are images as uint8 (what is stored); the networks read them as floats in [0, 1].
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn
from torch.nn import functional as F

BATCH_SIZE = 64
LEARNING_RATE = 1e-3


def derived_seed(seed: int, generation: int, purpose: str) -> int:
    """A seed for one purpose in one generation of a run, independent of every other."""
    digest = hashlib.sha256(f"{seed}:{generation}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


class VAE(nn.Module):
    """A dense VAE with one hidden layer each way and a Bernoulli-mean decoder (logits)."""

    def __init__(self, dimension: int, hidden: int, latent: int):
        super().__init__()
        self.latent = latent
        self.encoder = nn.Sequential(nn.Linear(dimension, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, dimension))

    def loss(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per sample: binary cross-entropy of the reconstruction plus the KL term."""
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        z = mean + torch.exp(0.5 * log_var) * noise
        reconstruction = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
        return (reconstruction + kl) / x.shape[0]


def classifier(dimension: int, hidden: int, labels: int) -> nn.Module:
    """The small dense classifier trained on every generation."""
    return nn.Sequential(nn.Linear(dimension, hidden), nn.ReLU(), nn.Linear(hidden, labels))


def initialised(module_factory, seed: int) -> nn.Module:
    """A module built with its initial weights drawn from ``seed`` (torch's global generator is
    left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return module_factory()


def as_floats(images: np.ndarray) -> torch.Tensor:
    """(N, …) uint8 images as (N, D) float32 in [0, 1]."""
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _fit(parameters, size: int, epochs: int, seed: int,
         batch_loss: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> list[float]:
    """Adam (fresh each call) over shuffled mini-batches of ``size`` items for ``epochs``;
    ``batch_loss(index, generator)`` is a batch's mean loss, drawing any noise from the same
    seeded generator as the shuffles. Returns the mean loss of each epoch."""
    generator = _generator(seed)
    optimiser = torch.optim.Adam(parameters, lr=LEARNING_RATE)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(size, generator=generator)
        total = 0.0
        for start in range(0, size, BATCH_SIZE):
            index = order[start:start + BATCH_SIZE]
            loss = batch_loss(index, generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(index)
        losses.append(total / size)
    return losses


def train_vae(vae: VAE, x: torch.Tensor, epochs: int, seed: int) -> list[float]:
    """Continue training ``vae`` on ``x`` (a fresh Adam each call); the mean loss of each epoch."""
    vae.train()
    return _fit(vae.parameters(), len(x), epochs, seed,
                lambda index, generator: vae.loss(x[index], torch.randn(len(index), vae.latent, generator=generator)))


def sample_vae(vae: VAE, count: int, seed: int) -> np.ndarray:
    """``count`` samples: decoder means of standard-normal latents, as (count, D) uint8."""
    vae.eval()
    with torch.inference_mode():
        z = torch.randn(count, vae.latent, generator=_generator(seed))
        pixels = torch.sigmoid(vae.decoder(z)).numpy()
    return np.rint(pixels * 255.0).astype(np.uint8)


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> list[float]:
    """Train ``model`` on (x, y); the mean cross-entropy of each epoch."""
    model.train()
    return _fit(model.parameters(), len(x), epochs, seed,
                lambda index, _generator: F.cross_entropy(model(x[index]), y[index]))


def predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return model(x).argmax(dim=1).numpy().astype(np.int64)


def state_bytes(module: nn.Module) -> bytes:
    """The module's weights as safetensors bytes (deterministic: same weights, same bytes)."""
    return save_tensors({k: v.detach().contiguous() for k, v in module.state_dict().items()})


def load_state(module: nn.Module, data: bytes) -> nn.Module:
    module.load_state_dict(load_tensors(data))
    return module
