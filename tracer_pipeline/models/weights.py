"""Where a real model's weights are on this machine: found offline, or a clear error at once.

A real model is looked for in two places, in this order:

1. ``<model dir>/<repository id>``, e.g. ``tracer_data/models/stabilityai/sd-turbo``: a copy of
   the repository's files (``hf download <repo> --local-dir ...`` or ``git clone``).
2. The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), as filled by ``hf download <repo>`` or an earlier online run.

Nothing here touches the network: an absent model raises :class:`WeightsNotFoundError` in
milliseconds instead of waiting on a download that cannot happen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tracer_pipeline.errors import WeightsNotFoundError
from tracer_pipeline.models.base import LoadOptions, ModelSpec


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache folder, read from the environment now.

    huggingface_hub reads these variables once, when it is imported; reading them here keeps
    a later change (a test, a resource configured from the environment) effective.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "huggingface" / "hub"


@dataclass(frozen=True)
class HubWeights:
    """A real model's repository and the files that show a copy of it is complete enough to load.

    ``required`` holds groups of file names: each group needs one of its names present, e.g.
    ``(("open_clip_config.json",), ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))``.
    """

    repo_id: str
    required: tuple[tuple[str, ...], ...]

    def local_dir(self, options: LoadOptions) -> Path:
        return Path(options.model_dir) / self.repo_id

    def _missing(self, directory: Path) -> list[str]:
        return [" or ".join(group) for group in self.required
                if not any((directory / name).is_file() for name in group)]

    def _cached_snapshot(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        snapshot: Path | None = None
        for group in self.required:
            found = [try_to_load_from_cache(self.repo_id, name, cache_dir=hf_hub_cache())
                     for name in group]
            paths = [Path(p) for p in found if isinstance(p, str)]
            if not paths:
                return None
            snapshot = paths[0].parent
        return snapshot

    def find(self, options: LoadOptions) -> Path | None:
        """The folder holding the weights, or None; a file-system look-up only."""
        local = self.local_dir(options)
        if local.is_dir() and not self._missing(local):
            return local
        return self._cached_snapshot()

    def available(self, options: LoadOptions) -> bool:
        return self.find(options) is not None

    def locate(self, spec: ModelSpec, options: LoadOptions) -> Path:
        """The folder holding ``spec``'s weights; :class:`WeightsNotFoundError` if there is none."""
        found = self.find(options)
        if found is not None:
            return found
        local = self.local_dir(options)
        missing = ", ".join(self._missing(local))
        local_state = f"exists, but lacks {missing}" if local.is_dir() else "does not exist"
        cache = hf_hub_cache()
        raise WeightsNotFoundError(
            f"weights of model {spec.name} (Hugging Face repository {self.repo_id}) are not on "
            f"this machine, and nothing is downloaded while loading. Searched:\n"
            f"  - {local} ({local_state})\n"
            f"  - the Hugging Face cache {cache} (no complete snapshot of {self.repo_id})\n"
            f"To provide them, either run `hf download {self.repo_id}` on a machine with "
            f"internet access and copy its cache to {cache} (or point HF_HOME / HF_HUB_CACHE "
            f"at it), or copy the repository's files into {local}."
        )


def missing_weights(names: Iterable[str], options: LoadOptions) -> list[str]:
    """One line per named model whose weights are not on this machine, with its repository and
    how to fetch it: checked before an experiment is registered, so that nothing is started
    that could only fail."""
    from tracer_pipeline.models.base import Family
    from tracer_pipeline.models.registry import get_model

    lines = []
    for spec in map(get_model, dict.fromkeys(get_model(name).name for name in names)):
        if spec.weights_available(options):
            continue
        if spec.family is Family.REAL:
            repos = spec.source.split(" + ")  # a model made of several repositories: "A + B"
            if len(repos) > 1:
                lines.append(f"{spec.name}: the weights of Hugging Face repositories {', '.join(repos)} are not all "
                             f"on this machine; fetch each missing one with `hf download REPO` (into the cache "
                             f"{hf_hub_cache()}) or copy its files into {Path(options.model_dir)}/REPO")
                continue
            local = Path(options.model_dir) / spec.source
            lines.append(f"{spec.name}: weights of Hugging Face repository {spec.source} are not on this "
                         f"machine; fetch them with `hf download {spec.source}` (into the cache "
                         f"{hf_hub_cache()}) or copy the repository's files into {local}")
        else:
            lines.append(f"{spec.name}: weights not found ({spec.source}); reinstall the package or "
                         "retrain them with `trajectory-tracer train-sceneworld`")
    return lines
