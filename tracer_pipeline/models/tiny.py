"""Tiny twins of the real models: the same library classes, small configs, seeded random weights.

A tiny model is written once, on first use, into ``<model dir>/tiny/<Name>-v<version>/`` with
the library's own ``save_pretrained`` (or open_clip's ``open_clip_config.json`` layout) and is
then loaded by exactly the code that loads its real twin from a downloaded repository
(``from_pretrained(directory)``, ``local-dir:directory``). So every real code path runs on CPU in
tests, in well under a second per call. Their weights are random: their outputs are noise.

Everything is built offline: the CLIP tokenizer from the BPE vocabulary that open_clip ships,
the other tokenizers from a small built-in word list.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer_pipeline.models.base import LoadOptions, ModelSpec

SIZE = 64
SEED = 0
# Vocabulary of the tiny captioners: enough words that captions of noise differ visibly.
WORDS = (
    "a", "an", "the", "of", "on", "in", "with", "and", "at", "by", "near", "under", "over",
    "behind", "above", "below", "beside", "red", "orange", "yellow", "green", "blue", "purple",
    "pink", "brown", "black", "white", "grey", "gold", "silver", "dark", "bright", "pale", "small",
    "large", "tiny", "huge", "tall", "short", "long", "round", "square", "old", "new", "soft",
    "sharp", "calm", "busy", "quiet", "loud", "empty", "full", "wet", "dry", "warm", "cold", "hot",
    "frozen", "cat", "dog", "bird", "fish", "horse", "cow", "sheep", "rabbit", "mouse", "bear",
    "lion", "tiger", "fox", "owl", "man", "woman", "child", "boy", "girl", "people", "crowd",
    "person", "face", "hand", "eye", "hair", "house", "tree", "flower", "grass", "field", "forest",
    "mountain", "hill", "river", "lake", "sea", "beach", "sky", "cloud", "sun", "moon", "star",
    "rain", "snow", "fog", "storm", "road", "street", "city", "town", "bridge", "tower", "car",
    "bus", "boat", "train", "plane", "bicycle", "window", "door", "wall", "floor", "table",
    "chair", "bed", "book", "cup", "plate", "bowl", "bottle", "lamp", "clock", "box", "ball",
    "kite", "balloon", "flag", "sign", "picture", "painting", "photo", "drawing", "pattern",
    "texture", "shape", "circle", "line", "stripe", "dot", "standing", "sitting", "running",
    "flying", "floating", "swimming", "sleeping", "walking", "glowing", "fading", "drifting",
    "spinning", "shining", "falling"
)
CLIP_CONTEXT = 77
BART_VOCAB = 800
FLORENCE_PROMPTS = ["What does the image describe?", "Describe in detail what is shown in the image.",
                    "Describe with a paragraph what is shown in the image."]


@dataclass(frozen=True)
class TinyWeights:
    """Where a tiny model lives, and how it is built there on first use.

    ``build(directory)`` writes a complete model into an empty directory. It runs in a
    temporary directory beside the target, which is then renamed into place, so a reader never
    sees a half-written model and two processes building at once both end with one good copy.
    """

    build: Callable[[Path], None]

    def directory(self, spec: ModelSpec, options: LoadOptions) -> Path:
        return Path(options.model_dir) / "tiny" / f"{spec.name}-v{spec.version}"

    def available(self, options: LoadOptions) -> bool:
        return True

    def locate(self, spec: ModelSpec, options: LoadOptions) -> Path:
        """The built model's directory, building it first if it is not there yet."""
        target = self.directory(spec, options)
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self.build(scratch)
            try:
                os.replace(scratch, target)
            except OSError:
                # Another process renamed its copy in first; theirs is as good as ours.
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target


@contextlib.contextmanager
def seeded(seed: int = SEED) -> Iterator[None]:
    """Seed torch's global generator for weight initialisation, restoring it afterwards."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    codes = printable + [256 + i for i in range(len(extra))]
    return [chr(c) for c in codes]


@functools.cache
def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's 49,408-token vocabulary and merges, built as OpenAI CLIP builds them from the
    BPE file that the open_clip wheel ships (found without importing open_clip)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("open_clip_torch is needed to build the tiny models' tokenizer")
    bpe = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.decompress(bpe.read_bytes()).decode("utf-8").split("\n")
    # The merges that open_clip's SimpleTokenizer (and OpenAI's) use: the file's first line is
    # a header, and only the first 48,894 merges make the 49,408-token vocabulary.
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    units = _bytes_to_unicode()
    tokens = [*units, *(u + "</w>" for u in units), *("".join(m) for m in merges),
              "<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges  # type: ignore[return-value]


def clip_tokenizer() -> Any:
    """A transformers CLIPTokenizer with CLIP's real vocabulary, built offline."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_CONTEXT)


def clip_text_config(**overrides: Any) -> Any:
    """A two-layer, 32-wide CLIP text encoder config over CLIP's real vocabulary."""
    from transformers import CLIPTextConfig

    vocab, _ = clip_vocabulary()
    settings = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                    num_hidden_layers=2, vocab_size=len(vocab), max_position_embeddings=CLIP_CONTEXT,
                    bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                    pad_token_id=vocab["<|endoftext|>"], projection_dim=32)
    return CLIPTextConfig(**{**settings, **overrides})


def tiny_autoencoder(latent_channels: int = 4, **overrides: Any) -> Any:
    """A 4-level VAE (scale factor 8, as in the real models) with a few channels per level."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(8, 16, 32, 32), in_channels=3, out_channels=3,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=latent_channels,
                         norm_num_groups=8, sample_size=SIZE, **overrides)


def build_sd(directory: Path) -> None:
    """SD-Turbo's shape: UNet, VAE, one CLIP text encoder, Euler with trailing timesteps."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    with seeded():
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 8,
            in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            norm_num_groups=8, attention_head_dim=4)
        vae = tiny_autoencoder()
        text_encoder = CLIPTextModel(clip_text_config())
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear",
                                       timestep_spacing="trailing", steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder,
                                       tokenizer=clip_tokenizer(), unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(directory)


def build_sdxl(directory: Path) -> None:
    """SDXL-Turbo's shape: two CLIP text encoders (the second with projection), a UNet with
    SDXL's size/crop conditioning, Euler ancestral with trailing timesteps."""
    from diffusers import (
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    time_embed_dim = 8
    with seeded():
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=SIZE // 8,
            in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
            use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim, transformer_layers_per_block=(1, 1),
            # six size/crop numbers, each embedded in time_embed_dim, plus the pooled text
            projection_class_embeddings_input_dim=6 * time_embed_dim + 32,
            cross_attention_dim=64, norm_num_groups=8)
        vae = tiny_autoencoder()
        text_encoder = CLIPTextModel(clip_text_config())
        text_encoder_2 = CLIPTextModelWithProjection(clip_text_config())
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                                beta_schedule="scaled_linear",
                                                timestep_spacing="trailing", steps_offset=1)
    tokenizer = clip_tokenizer()
    pipeline = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder,
                                         text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                                         tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    pipeline.save_pretrained(directory)


def t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer over the tiny word list, built offline."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("▁" + w, -5.0 - i / 1000) for i, w in enumerate(WORDS)]
    pieces += [(c, -12.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def build_flux(directory: Path) -> None:
    """FLUX.1-schnell's shape: a one-block MM-DiT, CLIP + T5 text encoders, flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    t5_tok = t5_tokenizer()
    with seeded():
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
            attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
            pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
        vae = tiny_autoencoder(use_quant_conv=False, use_post_quant_conv=False,
                               shift_factor=0.1159, scaling_factor=0.3611)
        text_encoder = CLIPTextModel(clip_text_config())
        text_encoder_2 = T5EncoderModel(T5Config(
            vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            pad_token_id=t5_tok.pad_token_id, eos_token_id=t5_tok.eos_token_id))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    pipeline = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                            tokenizer=clip_tokenizer(), text_encoder_2=text_encoder_2,
                            tokenizer_2=t5_tok, transformer=transformer)
    pipeline.save_pretrained(directory)


def build_blip(directory: Path) -> None:
    """BLIP's shape: a ViT image encoder and a BERT decoder over the tiny word list."""
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    tokens = [*specials, *".,!?'-0123456789", *WORDS]
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, bos_token="[DEC]",
                              additional_special_tokens=["[ENC]"], model_max_length=512)
    processor = BlipProcessor(BlipImageProcessor(size={"height": SIZE, "width": SIZE}), tokenizer)
    ids = {t: i for i, t in enumerate(tokens)}
    # Larger initialisation ranges than BLIP's defaults (0.02, vision 1e-10), with which every
    # image gets the same caption. With these, measured: 24 of 24 tiny SD images got distinct
    # captions, and so did 4 of 4 that differ by one or two grey levels.
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokens), hidden_size=32, encoder_hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         projection_dim=32, initializer_range=0.5, bos_token_id=ids["[DEC]"],
                         eos_token_id=ids["[SEP]"], sep_token_id=ids["[SEP]"],
                         pad_token_id=ids["[PAD]"]),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, projection_dim=32, image_size=SIZE,
                           patch_size=8, initializer_range=1.0),
        projection_dim=32, image_text_hidden_size=32, initializer_range=0.5)
    with seeded():
        model = BlipForConditionalGeneration(config)
    processor.save_pretrained(directory)
    model.save_pretrained(directory)


def bart_tokenizer() -> Any:
    """A byte-level BPE (BART/Florence-2 style) trained offline on the tiny word list."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import BartTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # Printable ASCII only: a random decoder picking a lone byte of a multi-byte character
    # would produce invalid UTF-8; words are whole tokens, so captions read as words.
    trainer = trainers.BpeTrainer(vocab_size=BART_VOCAB,
                                  special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=[chr(b) for b in range(33, 127)] + ["Ġ"],
                                  show_progress=False)
    # Florence-2's task prompts are in the corpus too, so that they are a few tokens, not dozens
    # of characters drowning the image tokens in the encoder.
    corpus = [" ".join(WORDS[i:i + 8]) for i in range(0, len(WORDS), 8)] + FLORENCE_PROMPTS
    bpe.train_from_iterator(corpus, trainer)
    merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]
    return BartTokenizer(vocab=bpe.get_vocab(), merges=merges,
                         extra_special_tokens={"image_token": "<image>"})


def build_florence2(directory: Path) -> None:
    """Florence-2's shape: a DaViT image encoder and a BART encoder-decoder."""
    from transformers import (
        BartConfig,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
        Florence2VisionConfig,
    )

    tokenizer = bart_tokenizer()
    # The last stage keeps its resolution, so a 64 px image gives 4×4 image tokens (plus one
    # pooled token) rather than 2×2: enough for the image to be heard among the prompt's tokens.
    strides = (4, 2, 2, 1)
    grid = SIZE // (strides[0] * strides[1] * strides[2] * strides[3])
    image_processor = CLIPImageProcessor(
        size={"height": SIZE, "width": SIZE}, crop_size={"height": SIZE, "width": SIZE},
        do_center_crop=False, image_seq_length=grid * grid + 1)
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    text = BartConfig(vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
                      encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                      decoder_ffn_dim=64, max_position_embeddings=256,
                      pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id,
                      # with BART's 0.02, every image gets the same caption
                      decoder_start_token_id=tokenizer.eos_token_id, init_std=0.5)
    vision = Florence2VisionConfig(depths=(1, 1, 1, 1), embed_dim=(8, 16, 32, 32),
                                   num_heads=(1, 2, 4, 4), num_groups=(1, 2, 4, 4), window_size=2,
                                   patch_stride=strides, projection_dim=32, drop_path_rate=0.0,
                                   initializer_range=0.5)
    config = Florence2Config(text_config=text, vision_config=vision,
                             image_token_id=tokenizer.image_token_id)
    with seeded():
        model = Florence2ForConditionalGeneration(config)
    processor.save_pretrained(directory)
    model.save_pretrained(directory)


CLIP_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16,
                   "patch_size": 32},
    "text_cfg": {"context_length": CLIP_CONTEXT, "vocab_size": 49408, "width": 32, "heads": 4,
                 "layers": 2},
}


def build_clip(directory: Path) -> None:
    """An open_clip CLIP with two-layer towers, saved as a hub repository is laid out."""
    import open_clip
    from safetensors.torch import save_file

    with seeded():
        model = open_clip.CLIP(**CLIP_MODEL_CFG)
    preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                  "std": list(open_clip.OPENAI_DATASET_STD),
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": CLIP_MODEL_CFG, "preprocess_cfg": preprocess}, indent=2))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
