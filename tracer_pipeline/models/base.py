"""What every model is, as the rest of the pipeline sees it.

A model is described by a :class:`ModelSpec` (registry entry) and, once loaded, is an adapter
with one batched call: :meth:`GenerativeModel.generate` (inputs and per-item seeds in, one
output or :class:`ModelFailure` per input out) or :meth:`EmbeddingModel.embed`.
Adapters know nothing of the database; the database knows nothing of models.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from PIL import Image

R = TypeVar("R")


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"


class ModelKind(StrEnum):
    TEXT_TO_IMAGE = "text-to-image"
    IMAGE_TO_TEXT = "image-to-text"
    EMBEDDING = "embedding"
    GENERATOR = "generator"  # retrained on its own samples: a self-consuming run's one model
    NOISE_TO_IMAGE = "noise-to-image"  # an unconditional generator: a steering run's one model


class Family(StrEnum):
    REAL = "real"
    TINY = "tiny"
    DUMMY = "dummy"
    SCENEWORLD = "sceneworld"
    SELF_CONSUMING = "self-consuming"


Output = str | Image.Image
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFailure:
    """A model's failure on one input: recorded as that invocation's error, never as an output."""

    error_type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ModelFailure:
        return cls(type(exc).__name__, str(exc) or repr(exc))

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


@dataclass(frozen=True)
class CallPolicy:
    """How long one model call may take (None: as long as it takes) and how many more times an
    item whose call raised is tried before its error is recorded."""

    timeout_s: float | None = 600.0
    retries: int = 2


DEFAULT_CALL_POLICY = CallPolicy()


class ModelTimeoutError(Exception):
    """A model call did not answer within its :class:`CallPolicy`'s timeout."""


class _CallThread:
    """A daemon thread that runs one calling thread's model calls, one at a time.

    Calls share a long-lived thread rather than each starting one: a one-item call of
    SceneWorld's models took 4.64 ms this way against 5.58 ms on a fresh thread per call and
    3.96 ms with no thread (``benchmarks/model_calls.py``). A daemon, so that a call that never
    returns cannot keep the process alive; it ends when its caller's thread does.
    """

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_serve, args=(self.jobs,), name="model-call", daemon=True).start()
        weakref.finalize(self, self.jobs.put, None)  # the caller's thread ended: stop serving


def _serve(jobs: queue.SimpleQueue) -> None:
    while (job := jobs.get()) is not None:
        call, args, answer, done = job
        try:
            answer["result"] = call(*args)
        except BaseException as exc:  # handed to the caller's thread as it is
            answer["error"] = exc
        del call, args, answer, job  # hold nothing of a finished call while waiting for the next
        done.set()


_callers = threading.local()  # each calling thread's _CallThread


def _call_with_timeout(call: Callable[..., list[Any]], args: list[list[Any]], timeout_s: float | None) -> list[Any]:
    if timeout_s is None:
        return call(*args)
    caller = getattr(_callers, "thread", None) or _CallThread()
    _callers.thread = caller
    answer: dict[str, Any] = {}
    done = threading.Event()
    caller.jobs.put((call, args, answer, done))
    if not done.wait(timeout_s):
        _callers.thread = None  # abandoned with the call it is stuck in; the next call gets a new thread
        raise ModelTimeoutError(f"no answer within {timeout_s:g} s")
    if "error" in answer:
        raise answer["error"]
    return answer["result"]


def batch_then_items(call: Callable[..., list[Any]], *columns: Sequence[Any],
                     policy: CallPolicy = DEFAULT_CALL_POLICY) -> list[Any]:
    """``call(*columns)`` on the whole batch (parallel lists, one item per row); when the batch
    raises or returns the wrong number of results, each item is tried alone, up to
    ``1 + policy.retries`` times (each retry logged), so that only the items that keep failing
    become :class:`ModelFailure` results. A call that times out is not retried: every item it
    held is a failure at once. The one retry rule of every model call.
    """
    rows = len(columns[0])
    if any(len(c) != rows for c in columns):
        raise ValueError(f"columns of different lengths: {[len(c) for c in columns]}")
    if rows == 0:
        return []
    if rows > 1:
        try:
            results = _call_with_timeout(call, [list(c) for c in columns], policy.timeout_s)
        except ModelTimeoutError as exc:
            log.warning("model call on a batch of %d timed out: %s", rows, exc)
            return [ModelFailure.from_exception(exc)] * rows
        except Exception:  # retried item by item below, which names the culprit
            pass
        else:
            if len(results) == rows:
                return results
    return [_item(call, [[c[i]] for c in columns], policy) for i in range(rows)]


def _item(call: Callable[..., list[Any]], args: list[list[Any]], policy: CallPolicy) -> Any:
    for attempt in range(1 + policy.retries):
        try:
            [result] = _call_with_timeout(call, args, policy.timeout_s)
            return result
        except ModelTimeoutError as exc:
            log.warning("model call timed out: %s", exc)
            return ModelFailure.from_exception(exc)
        except Exception as exc:  # a model's error is this item's result, not the batch's
            failure = ModelFailure.from_exception(exc)
            if attempt < policy.retries:
                log.warning("model call failed (attempt %d of %d), trying again: %s",
                            attempt + 1, 1 + policy.retries, failure)
    return failure


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: resolved device and dtype, where weights live, what is allowed.

    ``torch_threads``: torch's CPU thread count while models run on CPU (0 leaves torch's
    default). It is pinned because outputs depend on it: torch splits a convolution's or matrix
    product's sums differently across threads, so the tiny diffusion models' images differ
    between 1 and 2 threads (measured: some pixels off by one), and "the same config gives the
    same stored bytes" would otherwise hold only between machines with the same core count.
    """

    device: str = "cpu"
    dtype: str = "float32"
    model_dir: Path = Path("tracer_data/models")
    trust_remote_code: frozenset[str] = frozenset()
    torch_threads: int = 1


@runtime_checkable
class GenerativeModel(Protocol):
    def generate(self, inputs: Sequence[Output], seeds: Sequence[int]) -> list[Output | ModelFailure]:
        """One output (or failure) per input; item ``i`` is driven by ``seeds[i]`` alone."""
        ...


@runtime_checkable
class EmbeddingModel(Protocol):
    dimension: int

    def embed(self, items: Sequence[Output]) -> list[np.ndarray | ModelFailure]:
        """One L2-normalised float32 vector (or failure) per item."""
        ...


@dataclass(frozen=True)
class FormedImage:
    """An image output and the images it passed through on its way, as (step, image): what a
    model that forms its output by optimisation returns. The invocation stores ``image`` as its
    output and ``steps`` as its intermediate outputs."""

    image: Image.Image
    steps: tuple[tuple[int, Image.Image], ...]


@dataclass(frozen=True)
class ModelOption:
    """An option a network entry may set on a model, as in ``{"model": NAME, <option>: value}``.
    Its default is the model's ``params`` entry of the same name, so a model named without
    options and one given its defaults are the same model in a run's identity.

    ``type`` is ``int``, ``float``, ``str``, ``bool`` or ``Path`` (an image file, resolved
    against the experiment file's folder); ``low``/``high`` bound numbers; ``nullable`` allows
    ``null``.
    """

    type: type
    meaning: str
    low: float | None = None
    high: float | None = None
    nullable: bool = False

    def describe(self) -> str:
        """What the option accepts, for error messages and ``list-models``."""
        if self.type is Path:
            what = "a path to an image file"
        elif self.type in (int, float) and self.low is not None and self.high is not None:
            noun = "an integer" if self.type is int else "a number"
            what = f"{noun} from {self.low:g} to {self.high:g}"
        else:
            what = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[self.type]
        return what + (" or null" if self.nullable else "")


# A loader returns an adapter: a GenerativeModel, an EmbeddingModel, or for a GENERATOR the
# shared part of a self-consuming generator (tracer_pipeline.selfconsuming.generators), or for a
# NOISE_TO_IMAGE a NoiseGenerator (tracer_pipeline.steering.generators).
Loader = Callable[["ModelSpec", LoadOptions], Any]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: what a model is and how it loads.

    ``params`` are the parameters that change outputs: they are part of a run's identity.
    ``version`` changes when the code or weights change what the model outputs; stored results
    of an older version are stale and recomputed, never mixed with new ones.
    """

    name: str
    kind: ModelKind
    family: Family
    description: str
    loader: Loader = field(repr=False, compare=False)
    version: str = "1"
    source: str = "built-in"
    params: Mapping[str, Any] = field(default_factory=dict)
    embeds: frozenset[Modality] = frozenset()
    aliases: tuple[str, ...] = ()
    weights_available: Callable[[LoadOptions], bool] = field(
        default=lambda options: True, repr=False, compare=False
    )
    # What a network entry may set (defaults in ``params``), and the checks across options
    # (e.g. a range whose low end must not pass its high end): problems as "option: why".
    options: Mapping[str, ModelOption] = field(default_factory=dict, compare=False)
    check_options: Callable[[Mapping[str, Any]], list[str]] = field(
        default=lambda params: [], repr=False, compare=False
    )

    @property
    def input_modality(self) -> Modality | None:
        return {
            ModelKind.TEXT_TO_IMAGE: Modality.TEXT,
            ModelKind.IMAGE_TO_TEXT: Modality.IMAGE,
        }.get(self.kind)

    @property
    def output_modality(self) -> Modality | None:
        return {
            ModelKind.TEXT_TO_IMAGE: Modality.IMAGE,
            ModelKind.IMAGE_TO_TEXT: Modality.TEXT,
            ModelKind.GENERATOR: Modality.IMAGE,  # a grid of each generation's samples
            ModelKind.NOISE_TO_IMAGE: Modality.IMAGE,
        }.get(self.kind)

    @property
    def modalities(self) -> list[str]:
        if self.kind is ModelKind.EMBEDDING:
            return sorted(self.embeds)
        if self.kind is ModelKind.GENERATOR:
            return [f"own samples->{self.output_modality}"]
        if self.kind is ModelKind.NOISE_TO_IMAGE:
            return [f"noise->{self.output_modality}"]
        return [f"{self.input_modality}->{self.output_modality}"]

    def identity(self) -> dict[str, Any]:
        """The part of this model that belongs in a run's identity."""
        return {"name": self.name, "params": dict(sorted(self.params.items()))}

    def configured(self, params: Mapping[str, Any] | None) -> ModelSpec:
        """This model with a network entry's resolved options as its ``params`` (itself for a
        model without options, whose params are fixed by the registry)."""
        if not self.options or params is None:
            return self
        return replace(self, params=dict(params))


def image_to_png(image: Image.Image) -> bytes:
    """Lossless, deterministic PNG bytes (no timestamps or other ancillary chunks)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def png_to_image(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def output_digest(output: Output) -> str:
    """sha256 of an output's content: text as UTF-8, an image as its RGB pixels and size."""
    h = hashlib.sha256()
    if isinstance(output, str):
        h.update(b"text\0" + output.encode("utf-8"))
    else:
        rgb = output.convert("RGB")
        h.update(b"image\0" + json.dumps(rgb.size).encode() + b"\0" + rgb.tobytes())
    return h.hexdigest()


def normalise(vector: np.ndarray) -> np.ndarray | ModelFailure:
    """float32 unit vector, or a failure naming why it cannot be one."""
    v = np.asarray(vector, dtype=np.float64).ravel()
    if not np.all(np.isfinite(v)):
        return ModelFailure("NonFiniteEmbedding", "the embedding contains NaN or infinity")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        return ModelFailure("ZeroEmbedding", "the embedding is the zero vector")
    return (v / norm).astype(np.float32)


def each_item(
    name: str, takes: str, inputs: Sequence[Output], seeds: Sequence[int], one: Callable[[Any, int], R],
) -> list[R | ModelFailure]:
    """``one(input, seed)`` for each item of a batch, for a model that works an item at a time;
    ``takes`` is the modality it accepts (``"text"`` or ``"image"``). An input of the other
    modality, or an item whose call raises, is that item's :class:`ModelFailure`: one bad item
    never fails the batch."""
    results: list[R | ModelFailure] = []
    for item, seed in zip(inputs, seeds, strict=True):
        given = "text" if isinstance(item, str) else "image"
        if given != takes:
            results.append(ModelFailure("WrongInput", f"{name} expects {'text' if takes == 'text' else 'an image'}, "
                                                      f"got {'text' if given == 'text' else 'an image'}"))
            continue
        try:
            results.append(one(item, seed))
        except Exception as exc:  # one bad item must not fail the batch
            results.append(ModelFailure.from_exception(exc))
    return results


def check_caption(text: str) -> str:
    """A caption without surrounding white space. An empty caption is an output like any other
    (what the next model draws from nothing is part of the trajectory); stored as ``""``, it is
    marked by :attr:`tracer_pipeline.store.InvocationRecord.empty_caption`."""
    return text.strip()
