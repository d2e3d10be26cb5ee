"""Where things live: data directory, database URL, Dagster home, device. Read from the environment.

Environment variables (all optional):

- ``TRACER_DATA_DIR``: data directory (default ``./tracer_data``), created on demand.
- ``TRACER_DB_URL``: SQLAlchemy URL of the trace store (default ``sqlite:///<data dir>/tracer.sqlite``).
- ``TRACER_DEVICE``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
- ``TRACER_DTYPE``: ``auto`` (fp16 on CUDA where the model supports it, fp32 on CPU), ``float32``,
  ``float16`` or ``bfloat16``.
- ``TRACER_MODEL_DIR``: where tiny models are built and cached, and where real model weights
  may be placed as ``<dir>/<repository id>`` (default ``<data dir>/models``).
- ``TRACER_TORCH_THREADS``: torch's CPU thread count for models on CPU (default 1; 0 leaves
  torch's default). CPU outputs change with the thread count, so it is pinned for
  reproducible bytes across machines; raise it for speed where that does not matter.
- ``TRACER_EXPERIMENTS_DIR``: the folder the sensor watches (default ``./experiments``).
- ``DAGSTER_HOME``: Dagster's instance folder (default ``<data dir>/dagster_home``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DAGSTER_YAML = PACKAGE_DIR.parent / "dagster.yaml"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    path = Path(override or os.environ.get("TRACER_DATA_DIR") or "tracer_data").expanduser()
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_url(override: str | None = None, data: Path | None = None) -> str:
    url = override or os.environ.get("TRACER_DB_URL")
    if url:
        return url
    return f"sqlite:///{(data or data_dir()) / 'tracer.sqlite'}"


def model_dir(data: Path | None = None) -> Path:
    env = os.environ.get("TRACER_MODEL_DIR")
    path = Path(env).expanduser().resolve() if env else (data or data_dir()) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def device() -> str:
    return os.environ.get("TRACER_DEVICE", "auto")


def dtype() -> str:
    return os.environ.get("TRACER_DTYPE", "auto")


def torch_threads() -> int:
    raw = os.environ.get("TRACER_TORCH_THREADS", "1").strip()
    if not raw.isdigit():
        raise ValueError(f"TRACER_TORCH_THREADS must be 0 (torch's default) or a positive "
                         f"thread count, not {raw!r}")
    return int(raw)


def experiments_dir() -> Path:
    return Path(os.environ.get("TRACER_EXPERIMENTS_DIR") or "experiments").expanduser().resolve()


def ensure_dagster_home(data: Path | None = None) -> Path:
    """Point ``DAGSTER_HOME`` at an existing absolute folder holding this project's dagster.yaml.

    A user-set ``DAGSTER_HOME`` is respected (created if missing, its dagster.yaml left alone).
    """
    env = os.environ.get("DAGSTER_HOME")
    home = Path(env).expanduser().resolve() if env else (data or data_dir()) / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(DAGSTER_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home
