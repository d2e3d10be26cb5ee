"""What a CLIP-guided model optimises, and how it becomes an image.

- :class:`SpriteCanvas` (offline, with SceneCLIP): a few sprites drawn by SceneT2I's decoder
  (the cycle-trained generator's sprite decoder) and laid over the SceneWorld grey background (or
  over an init image) at places of their own. What is optimised is each sprite's decoder input —
  its clause as a soft mixture of the generator's word embeddings, and its share of the jitter
  noise — and where it lies, not pixels: every image is one the decoder draws, with SceneWorld's
  crisp outlines, as VQGAN+CLIP optimises a VQGAN's latent. The prompt never reaches the canvas;
  only the guide reads it. Why: a canvas of soft shapes with 4-term Fourier outlines drew rounded
  blobs that SceneCLIP accepted as the prompt's shape and SceneI2T read as another (37.5 % of
  prompts read right, see BENCHMARKS.md), and a grid of colours drew noise-like patterns.
- :class:`LatentCanvas` (real and tiny): the latent of a diffusers autoencoder, decoded by it, as
  VQGAN+CLIP optimises a VQGAN's latent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from tracer_pipeline.sceneworld.grammar import COLOURS, POSITIONS, SHAPES, SIZES, SceneObject, tokenize_words
from tracer_pipeline.sceneworld.render import BACKGROUND, IMAGE_SIZE, JITTER_PER_SLOT

# A start's words hold e^8 / (e^8 + 53) ≈ 98 % of their mixtures: the start is (nearly) the
# decoder's own drawing of one clause, and Adam can still move weight to other words.
START_SHARPNESS = 8.0
START_NOISE = 0.1  # seeded noise on every word's mixture logits
JITTER_START = 0.5  # standard deviation of a start's jitter noise (the renderer's own is 1)
JITTER_RANGE = 2.0  # jitter stays within ±2, as the renderer clips it
CENTRE_JITTER = 0.05  # of the image's size: where each sprite starts, around its home
# Centres move at a fifth of the other parameters' pace (Adam's steps are about lr in parameter
# units): moved as fast as the words, sprites wander off the places SceneWorld draws objects at.
CENTRE_PACE = 0.2
FIRST_WORD_ID = 4  # ids below are [PAD] [UNK] [BOS] [EOS]


class SpriteCanvas:
    """``shapes`` sprites laid over the background in order. Sprite i starts at home
    ((i + ½) / shapes of the width, the middle of the height), jittered by the seed, drawn from
    the clause of a seeded random object (``a <size> <colour> <shape> in the centre``).

    Each sprite's clause is a sequence of word mixtures (softmax over the generator's content
    words: not the separators, not the special tokens), pooled as the generator pools a clause's
    words (their mean embedding) and turned into a slot vector by its clause layers; the decoder
    draws it with the centre slot's query (the slot a start's words, "… in the centre", name)
    and the sprite's jitter, kept within the renderer's ±2. A sprite is 28 px at 64 px height
    and scales with the height; it is placed by bilinear resampling, so its centre is
    differentiable.
    """

    def __init__(self, generator: Any, tokenizer: Any, shapes: int, device: str = "cpu"):
        self.network = generator  # a frozen SceneGenerator and its WordTokenizer
        self.shapes = shapes
        self.device = device
        separators = set(generator.config.separator_ids)
        content = [i for i in range(FIRST_WORD_ID, len(tokenizer)) if i not in separators]
        self.words = {tokenizer.tokens[i]: k for k, i in enumerate(content)}  # word → its mixture index
        self._embeddings = generator.token_embedding.weight[torch.tensor(content, device=device)].detach()
        self._query = generator.slot_queries[POSITIONS.index("centre")].detach()

    def initial(self, height: int, width: int, init: torch.Tensor | None,
                generator: torch.Generator) -> list[torch.Tensor]:
        n = self.shapes
        self._homes = torch.tensor([[(i + 0.5) / n, 0.5] for i in range(n)], device=self.device)
        moves = CENTRE_JITTER / CENTRE_PACE * (2 * torch.rand((n, 2), generator=generator) - 1)
        clauses = [self._random_clause(generator) for _ in range(n)]
        logits = torch.zeros((n, len(clauses[0]), len(self.words)))
        for i, clause in enumerate(clauses):
            for w, word in enumerate(clause):
                logits[i, w, self.words[word]] = START_SHARPNESS
        logits = logits + START_NOISE * torch.randn(logits.shape, generator=generator)
        jitter = JITTER_START * torch.randn((n, JITTER_PER_SLOT), generator=generator)
        self._background = (init if init is not None else
                            torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, height, width)
                            / 255.0).to(self.device)
        return [t.to(self.device).requires_grad_(True) for t in (moves, logits, jitter)]

    @staticmethod
    def _random_clause(generator: torch.Generator) -> list[str]:
        def pick(values: tuple[str, ...]) -> str:
            return values[int(torch.randint(len(values), (1,), generator=generator))]

        start = SceneObject(pick(SHAPES), pick(COLOURS), pick(SIZES), "centre")
        return tokenize_words(start.phrase())

    def render(self, parameters: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        moves, logits, jitter = parameters
        dtype = self._embeddings.dtype  # the decoder's (the parameters stay float32)
        pooled = (logits.softmax(dim=-1).to(dtype) @ self._embeddings).mean(dim=1)
        slots = self.network.clause_values(self.network.clause_mlp(pooled))
        noise = (JITTER_RANGE * torch.tanh(jitter / JITTER_RANGE)).to(dtype)
        sprites = torch.sigmoid(self.network.decode_sprites(slots, self._query.expand_as(slots), noise).float())
        centres = self._homes + CENTRE_PACE * moves
        side = sprites.shape[-1] * height / IMAGE_SIZE
        image = self._background
        for i in range(self.shapes):
            placed = _place(sprites[i:i + 1], centres[i, 0] * width, centres[i, 1] * height, side, height, width)
            opacity = placed[:, 3:]
            image = image * (1 - opacity) + placed[:, :3] * opacity
        return image


def _place(sprite: torch.Tensor, x: torch.Tensor, y: torch.Tensor, side: float, height: int,
           width: int) -> torch.Tensor:
    """A (1, C, s, s) sprite resampled onto a (1, C, height, width) image, ``side`` pixels wide
    and centred at (x, y) pixels; zero (transparent) outside it. Differentiable in x and y."""
    zero = torch.zeros((), device=sprite.device)
    # grid_sample's affine map, from the image's normalised coordinates to the sprite's
    theta = torch.stack([
        torch.stack([zero + width / side, zero, (width / 2 - x) * 2 / side]),
        torch.stack([zero, zero + height / side, (height / 2 - y) * 2 / side]),
    ])[None]
    grid = F.affine_grid(theta, [1, sprite.shape[1], height, width], align_corners=False)
    return F.grid_sample(sprite, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class LatentCanvas:
    """A diffusers autoencoder's latent (``AutoencoderKL``), decoded to the image; started from
    the encoded init image, or from seeded standard-normal latents scaled as the autoencoder's
    latents are (÷ its ``scaling_factor``)."""

    def __init__(self, vae: Any, device: str):
        self.vae = vae
        self.device = device
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    def initial(self, height: int, width: int, init: torch.Tensor | None,
                generator: torch.Generator) -> list[torch.Tensor]:
        dtype = next(self.vae.parameters()).dtype
        if init is not None:
            with torch.no_grad():
                latent = self.vae.encode((init * 2 - 1).to(self.device, dtype)).latent_dist.mean.float()
        else:
            shape = (1, self.vae.config.latent_channels, height // self.factor, width // self.factor)
            latent = torch.randn(shape, generator=generator) / self.vae.config.scaling_factor
        return [latent.to(self.device).requires_grad_(True)]

    def render(self, parameters: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        decoded = self.vae.decode(parameters[0].to(dtype)).sample.float()
        return (decoded.clamp(-1, 1) + 1) / 2
