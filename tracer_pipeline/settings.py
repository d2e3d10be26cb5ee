"""Where things live and how models run: one typed :class:`Settings`, resolved once and passed down.

Resolution order for each field: an explicit value (a CLI flag), then the environment, then the
default. Nothing here writes ``os.environ``: the settings travel as an object to the Dagster
definitions (:func:`tracer_pipeline.defs.build_defs`) and, for a child process such as
``dagster dev``, as the environment returned by :meth:`Settings.environment`.

Environment variables (all optional):

- ``TRACER_DATA_DIR``: data directory (default ``./tracer_data``), created on first write.
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
- ``TRACER_EXECUTOR``: how Dagster runs steps: ``in_process`` (default: models stay loaded for
  the whole Dagster run), ``multiprocess``, or ``celery`` (steps go to Celery workers,
  ``trajectory-tracer worker``, each keeping its models loaded for as long as it lives; needs the
  ``cluster`` extra).
- ``TRACER_CELERY_BROKER``: the Celery broker's URL (default ``redis://127.0.0.1:6379/0``).
- ``TRACER_CELERY_BACKEND``: the Celery result backend's URL (default: the broker's).
- ``TRACER_GPU_POOL_SIZE``: how many model-running steps may run at once in the whole
  deployment: the size of Dagster's ``gpu`` pool, one per GPU worker (default 1).
- ``TRACER_TRUST_REMOTE_CODE``: comma-separated model names allowed to run code from their
  repositories (none by default).
- ``TRACER_MODEL_TIMEOUT_S``: seconds one model call may take before it is recorded as a
  failure (default 600; 0 = no limit).
- ``TRACER_MODEL_RETRIES``: how many more times an item whose model call raised is tried
  (default 2; each retry is logged).
- ``TRACER_MODEL_MEMORY_GB``: the model pool's memory budget (default: 80 % of the GPU's memory
  on CUDA, half the machine's memory on CPU); models a group of work does not need are freed
  to stay within it.
- ``DAGSTER_HOME``: Dagster's instance folder (default ``<data dir>/dagster_home``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tracer_pipeline.errors import SettingsError

PACKAGE_DIR = Path(__file__).resolve().parent
DAGSTER_YAML = PACKAGE_DIR.parent / "dagster.yaml"
EXECUTORS = ("in_process", "multiprocess", "celery")
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"


def _path(value: str | os.PathLike[str]) -> Path:
    return Path(value).expanduser().resolve()


def _count(name: str, raw: str) -> int:
    if not raw.strip().isdigit() or int(raw) < 1:
        raise SettingsError(f"{name} must be a positive whole number, not {raw!r}")
    return int(raw)


def _threads(raw: str) -> int:
    raw = raw.strip()
    if not raw.isdigit():
        raise SettingsError(f"TRACER_TORCH_THREADS must be 0 (torch's default) or a positive "
                            f"thread count, not {raw!r}")
    return int(raw)


def _number(name: str, raw: str | None, default: float) -> float:
    try:
        value = default if raw is None or not raw.strip() else float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SettingsError(f"{name} must be a number of 0 or more, not {raw!r}")
    return value


def reports_dir(data_dir: Path, experiment: str) -> Path:
    """Where an experiment's report (Markdown and figures) is written."""
    return data_dir / "reports" / experiment


def sceneworld_dir(data_dir: Path, seed: int) -> Path:
    """Where SceneWorld models retrained with ``seed`` are written."""
    return data_dir / "sceneworld" / f"seed-{seed}"


@dataclass(frozen=True)
class Settings:
    """Everything a process of this project needs to know about where it stores and how it runs."""

    data_dir: Path
    db_url: str
    model_dir: Path
    experiments_dir: Path
    dagster_home: Path
    device: str = "auto"
    dtype: str = "auto"
    torch_threads: int = 1
    executor: str = "in_process"
    trust_remote_code: tuple[str, ...] = field(default_factory=tuple)
    model_timeout_s: float = 600.0  # 0: no limit
    model_retries: int = 2
    model_memory_gb: float | None = None  # None: 80 % of the GPU's memory, half the machine's on CPU
    celery_broker: str = DEFAULT_CELERY_BROKER
    celery_backend: str = DEFAULT_CELERY_BROKER
    gpu_pool_size: int = 1

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise SettingsError(f"unknown executor {self.executor!r}; use one of {', '.join(EXECUTORS)}")
        if self.gpu_pool_size < 1:
            raise SettingsError(f"gpu_pool_size (TRACER_GPU_POOL_SIZE) must be at least 1, not {self.gpu_pool_size}")
        if self.torch_threads < 0:
            raise SettingsError(f"torch_threads must be 0 (torch's default) or a positive thread "
                                f"count, not {self.torch_threads}")

    @classmethod
    def resolve(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        db_url: str | None = None,
        device: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from explicit values, then ``environ`` (default: this process's environment),
        then the defaults. Relative paths are made absolute against the working directory."""
        env = os.environ if environ is None else environ
        data = _path(data_dir or env.get("TRACER_DATA_DIR") or "tracer_data")
        model_dir = env.get("TRACER_MODEL_DIR")
        home = env.get("DAGSTER_HOME")
        trusted = env.get("TRACER_TRUST_REMOTE_CODE", "")
        broker = env.get("TRACER_CELERY_BROKER") or DEFAULT_CELERY_BROKER
        return cls(
            data_dir=data,
            db_url=db_url or env.get("TRACER_DB_URL") or f"sqlite:///{data / 'tracer.sqlite'}",
            model_dir=_path(model_dir) if model_dir else data / "models",
            experiments_dir=_path(env.get("TRACER_EXPERIMENTS_DIR") or "experiments"),
            dagster_home=_path(home) if home else data / "dagster_home",
            device=device or env.get("TRACER_DEVICE") or "auto",
            dtype=env.get("TRACER_DTYPE") or "auto",
            torch_threads=_threads(env.get("TRACER_TORCH_THREADS", "1")),
            executor=env.get("TRACER_EXECUTOR") or "in_process",
            trust_remote_code=tuple(n.strip() for n in trusted.split(",") if n.strip()),
            model_timeout_s=_number("TRACER_MODEL_TIMEOUT_S", env.get("TRACER_MODEL_TIMEOUT_S"), 600.0),
            model_retries=int(_number("TRACER_MODEL_RETRIES", env.get("TRACER_MODEL_RETRIES"), 2)),
            model_memory_gb=(_number("TRACER_MODEL_MEMORY_GB", env["TRACER_MODEL_MEMORY_GB"], 0)
                             if env.get("TRACER_MODEL_MEMORY_GB") else None),
            celery_broker=broker,
            celery_backend=env.get("TRACER_CELERY_BACKEND") or broker,
            gpu_pool_size=_count("TRACER_GPU_POOL_SIZE", env.get("TRACER_GPU_POOL_SIZE", "1")),
        )

    def environment(self) -> dict[str, str]:
        """The environment variables that resolve to these settings in another process."""
        return {
            "TRACER_DATA_DIR": str(self.data_dir),
            "TRACER_DB_URL": self.db_url,
            "TRACER_MODEL_DIR": str(self.model_dir),
            "TRACER_EXPERIMENTS_DIR": str(self.experiments_dir),
            "DAGSTER_HOME": str(self.dagster_home),
            "TRACER_DEVICE": self.device,
            "TRACER_DTYPE": self.dtype,
            "TRACER_TORCH_THREADS": str(self.torch_threads),
            "TRACER_EXECUTOR": self.executor,
            "TRACER_TRUST_REMOTE_CODE": ",".join(self.trust_remote_code),
            "TRACER_MODEL_TIMEOUT_S": str(self.model_timeout_s),
            "TRACER_MODEL_RETRIES": str(self.model_retries),
            "TRACER_MODEL_MEMORY_GB": "" if self.model_memory_gb is None else str(self.model_memory_gb),
            "TRACER_CELERY_BROKER": self.celery_broker,
            "TRACER_CELERY_BACKEND": self.celery_backend,
            "TRACER_GPU_POOL_SIZE": str(self.gpu_pool_size),
        }

    def reports_dir(self, experiment: str) -> Path:
        return reports_dir(self.data_dir, experiment)

    def sceneworld_dir(self, seed: int) -> Path:
        return sceneworld_dir(self.data_dir, seed)

    def ensure_dagster_home(self) -> Path:
        """Create the Dagster instance folder with this project's dagster.yaml, if missing, its
        storage paths made absolute.

        A dagster.yaml already there (a user's own) is left alone.
        """
        try:
            self.dagster_home.mkdir(parents=True, exist_ok=True)
            target = self.dagster_home / "dagster.yaml"
            if not target.exists():
                text = DAGSTER_YAML.read_text().replace("${DAGSTER_HOME}", str(self.dagster_home))
                partial = target.with_suffix(".yaml.partial")
                partial.write_text(text)
                partial.replace(target)  # atomic: a concurrent reader never sees half a file
        except OSError as exc:
            raise SettingsError(f"cannot create Dagster's instance folder {self.dagster_home}: "
                                f"{exc.strerror or exc}; check --data-dir or DAGSTER_HOME") from None
        return self.dagster_home
