"""Model loading: lazy, cached per process, on an explicit device and dtype, within a memory
budget, freed on release."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tracer_pipeline.errors import ModelLoadError, TracerError
from tracer_pipeline.models.base import (
    DEFAULT_CALL_POLICY,
    CallPolicy,
    EmbeddingModel,
    Family,
    GenerativeModel,
    LoadOptions,
)
from tracer_pipeline.models.registry import get_model

log = logging.getLogger(__name__)
AUTO_BUDGET_SHARE = 0.8  # of the GPU's memory (on CPU: half the machine's memory)

DEVICES_HELP = "use auto, cpu, cuda or cuda:N"
DTYPES = ("auto", "float32", "float16", "bfloat16")


def resolve_load_options(
    device: str = "auto",
    dtype: str = "auto",
    model_dir: str | Path = "tracer_data/models",
    trust_remote_code: frozenset[str] = frozenset(),
    torch_threads: int = 1,
) -> LoadOptions:
    """Turn ``auto`` into a concrete device (CUDA when present, else CPU) and dtype (float16 on
    CUDA, float32 on CPU), and check that the device exists.

    ``torch_threads`` pins torch's CPU thread count (0: torch's default) because CPU outputs
    depend on it; see :class:`LoadOptions`.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if torch_threads < 0:
        raise ModelLoadError(f"torch_threads must be 0 (torch's default) or a positive thread "
                             f"count, not {torch_threads}")
    if device != "cpu" and device != "auto" and not device.startswith("cuda"):
        raise ModelLoadError(f"unknown device {device!r}; {DEVICES_HELP}")
    if device == "cpu":
        resolved = "cpu"
    else:
        import torch

        if device == "auto":
            resolved = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            if not torch.cuda.is_available():
                raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available here; "
                                     "use --device cpu or auto")
            index = device.partition(":")[2]
            if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
                raise ModelLoadError(f"device {device!r} does not exist: this machine has "
                                     f"{torch.cuda.device_count()} CUDA device(s)")
            resolved = device
    if dtype == "auto":
        dtype = "float16" if resolved.startswith("cuda") else "float32"
    return LoadOptions(device=resolved, dtype=dtype, model_dir=Path(model_dir),
                       trust_remote_code=frozenset(trust_remote_code), torch_threads=torch_threads)


# Dummy models are numpy on the CPU whatever the pool's options: they are loaded with these, so
# that a pool of dummy models never resolves "auto" (which imports torch to look for CUDA).
DUMMY_OPTIONS = LoadOptions()


def memory_budget(device: str, gigabytes: float | None) -> int:
    """The pool's budget in bytes: ``gigabytes`` when given, else 80 % of the GPU's memory on
    CUDA and half the machine's memory on CPU."""
    if gigabytes is not None:
        return int(gigabytes * 2**30)
    if device.startswith("cuda"):
        import torch

        return int(AUTO_BUDGET_SHARE * torch.cuda.get_device_properties(torch.device(device)).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def resident_bytes(model: Any) -> int:
    """Bytes of the torch parameters and buffers a loaded model holds (its adapter's modules and
    their pipelines' components); 0 for models without torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    seen: set[int] = set()
    total = 0
    stack = [(model, 0)]
    while stack:
        value, depth = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*value.parameters(), *value.buffers()))
        elif depth < 2 and hasattr(value, "__dict__"):
            stack += [(v, depth + 1) for v in vars(value).values()]
    return total


OPTIONS_SEPARATOR = " "  # model names hold no spaces (config.NAME_PATTERN's characters)


def model_key(name: str, params: Mapping[str, Any] | None = None) -> str:
    """What the pool keeps a loaded model under: its canonical name, followed for a model with
    options by its resolved options as canonical JSON."""
    spec = get_model(name)
    if not spec.options or params is None:
        return spec.name
    return spec.name + OPTIONS_SEPARATOR + json.dumps(dict(params), sort_keys=True, separators=(",", ":"))


class ModelPool:
    """Loads models by registry name on first use and keeps them while they fit in the memory
    budget.

    ``options`` (and the budget) may be given as functions that resolve them: they are called
    when the first model other than a dummy one loads, so a pool of dummy models never resolves
    device "auto" (which imports torch to look for CUDA).

    Work is done a group at a time (the runs of one network, then one embedding model):
    :meth:`prepare` is told what the next group needs and frees, least recently used first,
    loaded models it does not need while the models kept and those it needs (at their size when
    last loaded) would exceed the budget. A load that goes over the budget frees the same way
    at once. ``events`` lists every ("load" | "free", model name), in order.
    """

    def __init__(self, options: LoadOptions | Callable[[], LoadOptions], policy: CallPolicy = DEFAULT_CALL_POLICY,
                 memory_budget_bytes: int | Callable[[LoadOptions], int] | None = None):
        self._options = options
        self.policy = policy
        self._budget = memory_budget_bytes
        self._loaded: dict[str, GenerativeModel | EmbeddingModel] = {}  # least recently used first
        self._sizes: dict[str, int] = {}
        self._needed: set[str] = set()
        self.events: list[tuple[str, str]] = []

    def prepare(self, names: Iterable[str], params: Iterable[Mapping[str, Any] | None] | None = None) -> None:
        """Make room for a group of work that needs the models ``names`` (with ``params``, one
        per name, for models with options)."""
        names = list(names)
        params = list(params) if params is not None else [None] * len(names)
        self._needed = {model_key(n, p) for n, p in zip(names, params, strict=True)}
        coming = sum(self._sizes.get(n, 0) for n in self._needed if n not in self._loaded)
        self._fit(coming)

    @property
    def memory_budget_bytes(self) -> int | None:
        if callable(self._budget):
            self._budget = self._budget(self.options)
        return self._budget

    def _fit(self, coming: int = 0) -> None:
        if not any(self._sizes.values()) and not coming:
            return  # nothing of any size loaded (dummy models): no budget to resolve
        if self.memory_budget_bytes is None:
            return
        dropped = False
        for name in [n for n in self._loaded if n not in self._needed]:
            if sum(self._sizes[n] for n in self._loaded) + coming <= self.memory_budget_bytes:
                break
            self._drop(name)
            dropped = True
        if dropped:
            self._reclaim()

    @property
    def options(self) -> LoadOptions:
        if not isinstance(self._options, LoadOptions):
            self._options = self._options()
        return self._options

    def get(self, name: str, params: Mapping[str, Any] | None = None) -> GenerativeModel | EmbeddingModel:
        """The model ``name``, loaded on first use; a model with options is loaded (and kept)
        once per distinct ``params`` (its resolved options), since they shape the adapter."""
        spec = get_model(name).configured(params)
        key = model_key(name, params)
        if key in self._loaded:
            self._loaded[key] = self._loaded.pop(key)  # most recently used
            return self._loaded[key]
        options = DUMMY_OPTIONS if spec.family is Family.DUMMY else self.options
        try:
            model = spec.loader(spec, options)
        except TracerError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load model {spec.name} ({spec.source}) on "
                                 f"{options.device}: {type(exc).__name__}: {exc}") from exc
        self._loaded[key] = model
        self._sizes[key] = resident_bytes(model)
        self.events.append(("load", key))
        log.info("loaded %s (%.1f MB)", key, self._sizes[key] / 2**20)
        self._pin_threads()
        self._needed.add(key)
        self._fit()
        # A model and the libraries imported for it live as long as the pool keeps it: frozen,
        # the collector stops walking their objects at every full collection (seconds over a
        # run of a torch model); _reclaim unfreezes them before collecting dropped models.
        gc.freeze()
        return model

    def _pin_threads(self) -> None:
        # Only once a loader has imported torch: dummy models must not pay for importing it.
        torch = sys.modules.get("torch")
        if torch is not None and self.options.device == "cpu" and self.options.torch_threads > 0:
            torch.set_num_threads(self.options.torch_threads)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def _drop(self, name: str) -> None:
        self._loaded.pop(name, None)
        self.events.append(("free", name))
        log.info("freed %s", name)

    @staticmethod
    def _reclaim() -> None:
        # Once after dropping any number of models: a full collection walks the whole heap,
        # which in a long-lived process costs seconds, so one per dropped model adds up.
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def release(self, name: str | None = None) -> None:
        """Drop one model (every loaded configuration of it), or all, and return the memory,
        GPU memory included."""
        dropped = [key for key in self._loaded
                   if name is None or key.partition(OPTIONS_SEPARATOR)[0] == get_model(name).name]
        for key in dropped:
            self._drop(key)
        if dropped:
            self._reclaim()
