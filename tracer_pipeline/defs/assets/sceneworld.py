"""Retraining the SceneWorld models, as an asset so that lineage and caching cover it.

``sceneworld.train`` (and with it torch) is imported when the asset runs, not when the
definitions load: an experiment of dummy models never needs torch.
"""

import hashlib
import json

import dagster as dg

from tracer_pipeline.defs.partitions import OWNERS
from tracer_pipeline.defs.resources import DataFoldersResource
from tracer_pipeline.sceneworld.evaluate import BARS
from tracer_pipeline.sceneworld.models import TRAINING_VERSION, weight_files


class SceneWorldTraining(dg.Config):
    seed: int = 0


def _weights_digest(folder) -> str:
    from tracer_pipeline.sceneworld import train

    h = hashlib.sha256()
    for name in train.MODELS:
        h.update((folder / weight_files(name)[0]).read_bytes())
    return h.hexdigest()[:16]


@dg.asset(group_name="sceneworld", code_version=TRAINING_VERSION, kinds={"pytorch"}, owners=OWNERS)
def sceneworld_models(
    context: dg.AssetExecutionContext, config: SceneWorldTraining, folders: DataFoldersResource
) -> dg.MaterializeResult:
    """The SceneWorld models (SceneI2T, SceneCLIP, SceneT2ISupervised, then SceneT2I fine-tuned
    from it by circular consistency, and SceneGen) retrained from scratch on CPU with the given seed
    into ``<data dir>/sceneworld/seed-<seed>``, and their quality bars
    measured on held-out scenes. Weights already trained there by this code version are kept
    (training is reproducible: the same seed gives the same bytes). The weights the registry uses
    ship in ``tracer_pipeline/sceneworld/weights``; copy retrained ones there to use them."""
    from tracer_pipeline.sceneworld import train

    out = folders.sceneworld_dir(config.seed)
    metrics_file = out / "metrics.json"
    cached = False
    if metrics_file.exists() and all((out / weight_files(m)[0]).exists() for m in train.MODELS):
        figures = json.loads(metrics_file.read_text())
        cached = figures.get("seed") == config.seed and figures.get("code_version") == TRAINING_VERSION
    if not cached:
        def progress(name: str, step: int, steps: int, loss: float) -> None:
            context.log.info(f"{name}: step {step}/{steps}, loss {loss:.4f}")

        figures = train.train_all(out, config.seed, progress)
        figures["code_version"] = TRAINING_VERSION
        metrics_file.write_text(json.dumps(figures, indent=1) + "\n")
    bars = {name: figures.get(name) for name in BARS if name != "ms_per_item"}
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out)),
            "skipped_already_trained": cached,
            "quality": dg.MetadataValue.json({**bars, "bars": BARS}),
            "training_seconds": dg.MetadataValue.json(figures.get("training_seconds", {})),
        },
        data_version=dg.DataVersion(_weights_digest(out)),
    )
