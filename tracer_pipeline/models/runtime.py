"""What every torch-backed adapter shares: the dtype to load in, and turning failures into
per-item :class:`ModelFailure` results.

torch is imported inside the functions so that importing the registry stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tracer_pipeline.models.base import LoadOptions, ModelFailure, batch_then_items

In = TypeVar("In")
Out = TypeVar("Out")


def torch_dtype(options: LoadOptions, half: str | None = None) -> Any:
    """The torch dtype to load weights in.

    ``half`` replaces a float16 request for models that overflow in float16 (FLUX gives black
    images in float16 and runs in bfloat16).
    """
    import torch

    name = options.dtype
    if name == "float16" and half is not None:
        name = half
    return {"float32": torch.float32, "float16": torch.float16,
            "bfloat16": torch.bfloat16}[name]


def one_item_at_a_time(options: LoadOptions) -> bool:
    """Whether the adapters must call the model one item at a time.

    On CPU, torch's batched kernels (oneDNN convolutions and matrix products) pick different
    blockings for different batch sizes, so an item's output differs in its last bits with the
    batch it was computed in (measured: tiny SD pixels off by one). The pipeline promises that
    a run's outputs do not depend on which other runs were batched with it, so on CPU every
    item is computed alone. On CUDA, batches are kept for throughput; byte-identical outputs
    are promised on CPU only.
    """
    return not options.device.startswith("cuda")


def run_items(
    batch_call: Callable[[list[In], list[int]], list[Out | ModelFailure]],
    inputs: Sequence[In],
    seeds: Sequence[int],
    one_at_a_time: bool,
) -> list[Out | ModelFailure]:
    """Call ``batch_call`` on all inputs at once (or one at a time), isolating failures with
    :func:`batch_then_items`."""
    if not one_at_a_time:
        return batch_then_items(batch_call, inputs, seeds)
    return [out for item, seed in zip(inputs, seeds, strict=True)
            for out in batch_then_items(batch_call, [item], [seed])]
