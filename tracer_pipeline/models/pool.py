"""Model loading: lazy, cached per process, on an explicit device and dtype, freed on release."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from pathlib import Path

from tracer_pipeline.errors import ModelLoadError, TracerError
from tracer_pipeline.models.base import EmbeddingModel, Family, GenerativeModel, LoadOptions
from tracer_pipeline.models.registry import get_model

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


class ModelPool:
    """Loads models by registry name on first use and keeps them for the life of the pool.

    ``options`` may be given as a function that resolves them (``resolve_load_options`` with its
    arguments bound): it is called when the first model other than a dummy one loads.
    """

    def __init__(self, options: LoadOptions | Callable[[], LoadOptions]):
        self._options = options
        self._loaded: dict[str, GenerativeModel | EmbeddingModel] = {}

    @property
    def options(self) -> LoadOptions:
        if not isinstance(self._options, LoadOptions):
            self._options = self._options()
        return self._options

    def get(self, name: str) -> GenerativeModel | EmbeddingModel:
        spec = get_model(name)
        if spec.name not in self._loaded:
            options = DUMMY_OPTIONS if spec.family is Family.DUMMY else self.options
            try:
                self._loaded[spec.name] = spec.loader(spec, options)
            except TracerError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"could not load model {spec.name} ({spec.source}) on "
                                     f"{options.device}: {type(exc).__name__}: {exc}") from exc
            self._pin_threads()
        return self._loaded[spec.name]

    def _pin_threads(self) -> None:
        # Only once a loader has imported torch: dummy models must not pay for importing it.
        torch = sys.modules.get("torch")
        if torch is not None and self.options.device == "cpu" and self.options.torch_threads > 0:
            torch.set_num_threads(self.options.torch_threads)

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def release(self, name: str | None = None) -> None:
        """Drop one model (or all) and return its memory, GPU memory included."""
        names = [get_model(name).name] if name else list(self._loaded)
        for n in names:
            self._loaded.pop(n, None)
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
