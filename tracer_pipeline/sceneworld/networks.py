"""The SceneWorld networks (torch): generators (supervised and cycle-trained), captioner and
the open_clip joint embedder.

Sizes are chosen for CPU: each network trains in 10–30 minutes on one thread, weighs 1–2 MB
and runs one item in a few milliseconds. Imported only by loaders and training, never by the
registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tracer_pipeline.sceneworld.grammar import POSITIONS
from tracer_pipeline.sceneworld.render import BACKGROUND, CENTRES, IMAGE_SIZE, JITTER_DIM, JITTER_PER_SLOT


@dataclass(frozen=True)
class GeneratorConfig:
    vocab_size: int
    separator_ids: tuple[int, ...]
    width: int = 64
    clauses: int = 6
    channels: tuple[int, ...] = (48, 24)
    sprite: int = 28


class SceneGenerator(nn.Module):
    """Text + noise → 64×64 image: a conditional decoder that draws one sprite per position slot.

    The caption is cut into clauses at its separator words (``,``, ``and``, ``with``) and each
    clause becomes one vector (an MLP over the mean of its word embeddings). One learned query
    per position slot attends over the clauses, or over a learned "nothing here" option, and so
    picks out "the object on the left", "the object at the top", …. Each slot's vector, joined
    with that slot's share of the noise, is decoded by one shared conv decoder (diffusers'
    ResnetBlock2D blocks) into a 28×28 colour-and-opacity sprite, and the sprites are laid over
    the grey background at their slots' places.

    Why this shape: on one CPU thread, a text transformer feeding a whole-image decoder sat at an
    empty grey picture for hundreds of steps, because binding a position word to its clause and
    drawing anywhere in the frame had to be learnt together. Given clauses and slots, the decoder
    only learns to draw one shape, which it does in minutes. The noise is the renderer's jitter
    vector during training, so a seeded noise vector moves, resizes and tints objects as the
    renderer's jitter does.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        w, c0 = config.width, config.channels[0]
        self.register_buffer("separators", torch.tensor(config.separator_ids, dtype=torch.long),
                             persistent=False)
        self.register_buffer("background", torch.tensor(BACKGROUND).view(1, 3, 1, 1) / 255.0,
                             persistent=False)
        self.token_embedding = nn.Embedding(config.vocab_size, w)
        self.clause_mlp = nn.Sequential(nn.Linear(w, 2 * w), nn.SiLU(), nn.Linear(2 * w, w))
        self.clause_keys = nn.Linear(w, w)
        self.clause_values = nn.Linear(w, w)
        self.slot_queries = nn.Parameter(torch.randn(len(POSITIONS), w) * 0.1)
        self.empty_score = nn.Parameter(torch.zeros(len(POSITIONS)))
        self.base = config.sprite // 2 ** len(config.channels)
        self.slot_mlp = nn.Sequential(nn.Linear(2 * w + JITTER_PER_SLOT, 2 * w), nn.SiLU(),
                                      nn.Linear(2 * w, c0 * self.base * self.base))
        blocks: list[nn.Module] = [_Resnet(c0, c0)]
        for c_in, c_out in zip(config.channels, config.channels[1:], strict=False):
            blocks += [nn.Upsample(scale_factor=2, mode="nearest"), _Resnet(c_in, c_out)]
        # The last doubling is a sub-pixel convolution: full-resolution detail without running
        # convolutions at full resolution, which would dominate the cost.
        blocks += [nn.GroupNorm(8, config.channels[-1]), nn.SiLU(),
                   nn.Conv2d(config.channels[-1], 4 * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*blocks)

    def forward(self, tokens: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``tokens`` (B, L) ids, ``noise`` (B, JITTER_DIM) → images (B, 3, 64, 64) in [0, 1]."""
        return self.compose(torch.sigmoid(self.sprites(tokens, noise)))

    def sprites(self, tokens: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each slot's sprite as logits of colour and opacity, (B, slots, 4, 28, 28)."""
        return self.draw(self.slot_vectors(tokens)[0], noise)

    def slot_vectors(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What each position slot should hold, read from the caption's clauses, (B, slots, W),
        and how much of its attention goes to a clause rather than to "nothing here", (B, slots)."""
        batch, k = tokens.shape[0], self.config.clauses
        separator = torch.isin(tokens, self.separators)
        content = (tokens >= 4) & ~separator  # ids below 4 are [PAD] [UNK] [BOS] [EOS]
        clause = separator.long().cumsum(dim=1).clamp(max=k - 1)
        member = F.one_hot(clause, k).to(self.token_embedding.weight.dtype) * content[..., None]
        counts = member.sum(dim=1)
        pooled = torch.einsum("blk,blw->bkw", member, self.token_embedding(tokens))
        clauses = self.clause_mlp(pooled / counts.clamp(min=1)[..., None])
        scores = torch.einsum("sw,bkw->bsk", self.slot_queries, self.clause_keys(clauses))
        scores = scores / clauses.shape[-1] ** 0.5
        scores = scores.masked_fill((counts == 0)[:, None, :], float("-inf"))
        empty = self.empty_score.expand(batch, -1)[..., None]
        attention = torch.cat([scores, empty], dim=-1).softmax(dim=-1)[..., :k]
        return torch.einsum("bsk,bkw->bsw", attention, self.clause_values(clauses)), attention.sum(dim=-1)

    def draw(self, slots: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sprites (B, slots, 4, 28, 28) from slot vectors and the jitter noise (B, JITTER_DIM)."""
        batch = slots.shape[0]
        queries = self.slot_queries.expand(batch, -1, -1)
        return self.decode_sprites(slots, queries, noise.view(batch, len(POSITIONS), JITTER_PER_SLOT))

    def decode_sprites(self, slots: torch.Tensor, queries: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sprites (..., 4, 28, 28) as logits of colour and opacity from slot vectors (..., W),
        the slot queries saying which slot each is drawn for (..., W) and each one's jitter
        (..., JITTER_PER_SLOT). Also how CLIPGuided draws sprites it places itself."""
        features = self.slot_mlp(torch.cat([slots, queries, noise], dim=-1))
        sprites = self.decoder(features.view(-1, self.config.channels[0], self.base, self.base))
        return sprites.view(*slots.shape[:-1], 4, self.config.sprite, self.config.sprite)

    def compose(self, sprites: torch.Tensor) -> torch.Tensor:
        """Lay each slot's sprite (colour, opacity) over the background, centred on its slot."""
        size, half = self.config.sprite, self.config.sprite // 2
        margin = half  # sprites of edge slots reach past the frame: draw on a larger canvas
        full = IMAGE_SIZE + 2 * margin
        canvas = self.background.expand(sprites.shape[0], 3, full, full)
        for slot, position in enumerate(POSITIONS):
            cx, cy = CENTRES[position]
            x0, y0 = cx - half + margin, cy - half + margin
            pad = (x0, full - x0 - size, y0, full - y0 - size)
            colour = F.pad(sprites[:, slot, :3], pad)
            opacity = F.pad(sprites[:, slot, 3:], pad)
            canvas = canvas * (1 - opacity) + colour * opacity
        return canvas[:, :, margin:margin + IMAGE_SIZE, margin:margin + IMAGE_SIZE]


class CycleSceneGenerator(SceneGenerator):
    """SceneGenerator with a stochastic bottleneck on each slot's vector, as in a VAE: an
    occupied slot holds ``μ + σ·ε`` with ``σ`` learned and ``ε`` drawn from the seed, and training
    pays a KL term for what the slot carries, which limits how much of the text beyond the scene
    a picture can carry. The noise is scaled by how much the slot attends to a
    clause, so an empty slot stays (nearly) empty; unscaled, ``ε`` drew faint marks there. Trained by
    circular consistency: text → image → text through the frozen captioner
    (:func:`tracer_pipeline.sceneworld.train.train_generator_cycle`). Its noise is the jitter
    vector followed by ε, (B, JITTER_DIM + slots × W).
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__(config)
        self.slot_log_variance = nn.Linear(config.width, config.width)
        # Starts as the supervised generator it is fine-tuned from: σ ≈ 0.05.
        nn.init.zeros_(self.slot_log_variance.weight)
        nn.init.constant_(self.slot_log_variance.bias, -6.0)

    @property
    def latent_size(self) -> int:
        """How many standard normals ε takes after the jitter vector."""
        return len(POSITIONS) * self.config.width

    def sprites(self, tokens: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.sample(tokens, noise)[0]

    def sample(self, tokens: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sprites, KL divergence of the slots' posterior from N(0, I), per item summed over
        dimensions and over slots weighted by occupancy, mean over the batch)."""
        jitter, epsilon = noise[:, :JITTER_DIM], noise[:, JITTER_DIM:]
        mean, occupied = self.slot_vectors(tokens)
        log_variance = self.slot_log_variance(mean)
        slots = mean + occupied[..., None] * torch.exp(0.5 * log_variance) * epsilon.view_as(mean)
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).sum(dim=2)
        return self.draw(slots, jitter), (occupied * kl).sum(dim=1).mean()


class _Resnet(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        from diffusers.models.resnet import ResnetBlock2D

        self.block = ResnetBlock2D(in_channels=c_in, out_channels=c_out, temb_channels=None,
                                   groups=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, None)


@dataclass(frozen=True)
class CaptionerConfig:
    vocab_size: int
    context_length: int = 32
    channels: tuple[int, ...] = (24, 48, 32)
    crop: int = 28
    embedding: int = 64
    hidden: int = 128


class SceneCaptioner(nn.Module):
    """Image → caption: a conv encoder of the five places an object can be, and a GRU decoder
    that attends over them ("show, attend and tell").

    The encoder sees a 28×28 crop around each position slot (one shared CNN, plus a learned
    embedding of which slot it is) rather than the whole frame: a whole-frame encoder trained
    for 30 CPU-minutes still confused shapes in seven captions in ten, while a shared crop
    encoder sees every object centred and learns shapes from five examples per image.
    A GRU rather than a transformer decoder because decoding is one fused cell per word: a
    30-word caption costs a few milliseconds at batch 1, where a transformer decoder of the
    same size cost 80 ms per caption through ``generate`` on one CPU thread.
    """

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.config = config
        c1, c2, c3 = config.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c1, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(c2, c2, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c2, c3, 4, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(),
        )
        h, e = config.hidden, config.embedding
        self.crop_features = nn.Linear(c3 * (config.crop // 4) ** 2, h)
        self.slot_embedding = nn.Parameter(torch.randn(len(POSITIONS), h) * 0.1)
        self.keys = nn.Linear(h, h)
        self.values = nn.Linear(h, h)
        self.init_hidden = nn.Linear(h, h)
        self.token_embedding = nn.Embedding(config.vocab_size, e)
        self.cell = nn.GRUCell(e + h, h)
        self.query = nn.Linear(h, h)
        self.output = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Linear(h, config.vocab_size))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention keys and values (B, 5, H) and the initial decoder state (B, H)."""
        half = self.config.crop // 2
        padded = F.pad(images * 2.0 - 1.0, (half, half, half, half))
        crops = torch.stack([padded[:, :, cy:cy + 2 * half, cx:cx + 2 * half]
                             for cx, cy in (CENTRES[p] for p in POSITIONS)], dim=1)
        f = self.crop_features(self.encoder(crops.flatten(0, 1)))
        f = F.silu(f.view(images.shape[0], len(POSITIONS), -1)) + self.slot_embedding
        return self.keys(f), self.values(f), torch.tanh(self.init_hidden(f.mean(dim=1)))

    def step(self, token: torch.Tensor, state: torch.Tensor, keys: torch.Tensor,
             values: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One decoding step: (logits, new state, new attention context)."""
        state = self.cell(torch.cat([self.token_embedding(token), context], dim=-1), state)
        scores = torch.einsum("bh,bnh->bn", self.query(state), keys) / keys.shape[-1] ** 0.5
        context = torch.einsum("bn,bnh->bh", scores.softmax(dim=-1), values)
        return self.output(torch.cat([state, context], dim=-1)), state, context

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L-1, V) for predicting ``tokens[:, 1:]``."""
        keys, values, state = self.encode(images)
        context = values.mean(dim=1)
        logits = []
        for t in range(tokens.shape[1] - 1):
            out, state, context = self.step(tokens[:, t], state, keys, values, context)
            logits.append(out)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(self, image: torch.Tensor, bos_id: int, eos_id: int) -> list[int]:
        """The most likely word at each step, for one image (1, 3, 64, 64), until ``[EOS]``."""
        return self.decode(image, bos_id, eos_id)

    def decode(
        self, image: torch.Tensor, bos_id: int, eos_id: int, temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Words until ``[EOS]`` for one image (1, 3, 64, 64): the most likely word at each step
        when ``temperature`` is 0, else a word drawn from softmax(logits / temperature) with
        ``generator`` (so the same seed draws the same caption for the same image)."""
        keys, values, state = self.encode(image)
        context = values.mean(dim=1)
        token = torch.tensor([bos_id], device=image.device)
        ids: list[int] = []
        for _ in range(self.config.context_length - 1):
            logits, state, context = self.step(token, state, keys, values, context)
            if temperature > 0:
                probabilities = torch.softmax(logits.float().cpu() / temperature, dim=-1)
                token = torch.multinomial(probabilities, 1, generator=generator)[:, 0].to(image.device)
            else:
                token = logits.argmax(dim=-1)
            if int(token) == eos_id:
                break
            ids.append(int(token))
        return ids


@dataclass(frozen=True)
class ClipConfig:
    vocab_size: int
    eos_id: int
    context_length: int = 32
    embed_dim: int = 64


def clip_model_config(config: ClipConfig) -> dict[str, Any]:
    """open_clip's ``CLIP(**cfg)`` arguments: a small ModifiedResNet (one bottleneck block per
    stage, width 16, attention pooling) on the 64×64 image and a text transformer over SceneWorld
    word ids, pooled at ``[EOS]``.

    A ResNet rather than a ViT: a 3-layer ViT on 8×8 patches, trained the same way (hard-negative
    captions included), still picked the right shape among six captions for only 35 % of held-out
    scenes; the convolutions see outlines directly."""
    return {
        "embed_dim": config.embed_dim,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": (1, 1, 1, 1), "width": 16},
        "text_cfg": {"context_length": config.context_length, "vocab_size": config.vocab_size,
                     "width": 64, "heads": 4, "layers": 2, "mlp_ratio": 2.0,
                     "pool_type": "eos", "eos_id": config.eos_id, "pad_id": 0},
    }


def build_clip(config: ClipConfig) -> nn.Module:
    import open_clip

    return open_clip.CLIP(**clip_model_config(config))


def clip_pixels(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images → the centred range SceneCLIP's vision tower was trained on."""
    return images * 2.0 - 1.0


def save_config(config: Any, path: Path) -> None:
    path.write_text(json.dumps(asdict(config), indent=1) + "\n")


def load_config(cls: type, path: Path) -> Any:
    data = json.loads(path.read_text())
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
