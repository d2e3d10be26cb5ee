"""A steering run's options: their defaults, ranges and meaning, and their validation.

Every option changes what a run computes, so the resolved options (defaults overridden by the
config entry) are part of the run's identity. Importing this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracer_pipeline.errors import UnknownModelError
from tracer_pipeline.models.base import Modality, ModelKind


@dataclass(frozen=True)
class Option:
    """A numeric option: its type, range and what it changes."""

    kind: type
    low: float
    high: float
    meaning: str


OPTIONS: dict[str, Option] = {
    "actions": Option(int, 2, 4096, "noise vectors sampled per round"),
    "pairs": Option(int, 1, 256, "preference queries per round (pairs of the best-scored actions)"),
    "reward_epochs": Option(int, 1, 10_000, "reward-model training epochs per round (on the whole memory)"),
    "destination_epochs": Option(int, 0, 10_000, "gradient-ascent steps on the destination per round"),
    "reward_learning_rate": Option(float, 1e-6, 1.0, "Adam's learning rate for the reward model"),
    "destination_learning_rate": Option(float, 1e-6, 10.0, "Adam's learning rate for the destination"),
}
FEEDBACK_OPTIONS: dict[str, Option] = {
    "noise": Option(float, 0.0, 10.0, "standard deviation of the noise added to each similarity"),
    "both_good": Option(float, -1.0, 1.0, "both images at least this similar: answered 'both good'"),
    "both_bad": Option(float, -1.0, 1.0, "both images at most this similar: answered 'both bad'"),
}
DEFAULT_FEEDBACK: dict[str, Any] = {"embedding_model": "SceneCLIP", "noise": 0.0, "both_good": None, "both_bad": None}
DEFAULTS: dict[str, Any] = {
    "actions": 64, "pairs": 4, "reward_epochs": 20, "destination_epochs": 10,
    "reward_learning_rate": 0.01, "destination_learning_rate": 0.02, "feedback": DEFAULT_FEEDBACK,
}


def _number(option: Option, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if option.kind is int and not isinstance(value, int):
        return False
    return option.low <= value <= option.high


def _range(option: Option) -> str:
    what = "an integer" if option.kind is int else "a number"
    return f"expected {what} from {option.low:g} to {option.high:g} ({option.meaning})"


def check_feedback(given: Any, target_modality: Modality) -> tuple[dict[str, Any], list[str]]:
    """The resolved feedback options and the problems with ``given`` (the artificial user's
    feature space must embed images, and the target's modality to place the target in it)."""
    from tracer_pipeline.models.registry import get_model

    if not isinstance(given, dict):
        return dict(DEFAULT_FEEDBACK), ['feedback: expected {"embedding_model": NAME, "noise": …, '
                                        '"both_good": …, "both_bad": …}']
    problems: list[str] = []
    resolved = {**DEFAULT_FEEDBACK, **given}
    for key, value in given.items():
        if key == "embedding_model":
            continue
        option = FEEDBACK_OPTIONS.get(key)
        if option is None:
            problems.append(f"feedback.{key}: not a feedback option (its options: "
                            f"{', '.join(sorted(DEFAULT_FEEDBACK))})")
        elif not (value is None and key != "noise") and not _number(option, value):
            problems.append(f"feedback.{key}: {_range(option)}, got {value!r}")
        elif value is not None:
            resolved[key] = float(value)  # 0 and 0.0 name the same run
    name = resolved["embedding_model"]
    try:
        spec = get_model(name) if isinstance(name, str) else None
    except UnknownModelError as exc:
        problems.append(f"feedback.embedding_model: {exc}")
        spec = None
    if spec is None and not isinstance(name, str):
        problems.append(f"feedback.embedding_model: expected an embedding model's name, got {name!r}")
    elif spec is not None:
        if spec.kind is not ModelKind.EMBEDDING:
            problems.append(f"feedback.embedding_model: {spec.name} is a {spec.kind} model, not an embedding model")
        elif not {Modality.IMAGE, target_modality} <= spec.embeds:
            problems.append(f"feedback.embedding_model: {spec.name} embeds {', '.join(sorted(spec.embeds))}; the "
                            f"artificial user needs images and the target's modality ({target_modality})")
        resolved["embedding_model"] = spec.name
    good, bad = resolved["both_good"], resolved["both_bad"]
    if isinstance(good, int | float) and isinstance(bad, int | float) and not problems and bad >= good:
        problems.append(f"feedback: both_bad ({bad}) must be below both_good ({good})")
    return resolved, problems


def check_options(given: Mapping[str, Any], target_modality: Modality) -> tuple[dict[str, Any], list[str]]:
    """A steering entry's resolved options (the defaults overridden by ``given``) and the
    problems with ``given``, each naming the option and what it accepts."""
    problems: list[str] = []
    resolved = {k: v for k, v in DEFAULTS.items() if k != "feedback"}
    for key, value in given.items():
        if key == "feedback":
            continue
        option = OPTIONS.get(key)
        if option is None:
            problems.append(f"{key}: not an option of a steering run (its options: {', '.join(sorted(DEFAULTS))})")
        elif not _number(option, value):
            problems.append(f"{key}: {_range(option)}, got {value!r}")
        else:
            resolved[key] = float(value) if option.kind is float else value
    feedback, feedback_problems = check_feedback(given.get("feedback", {}), target_modality)
    resolved["feedback"] = feedback
    problems += feedback_problems
    if not problems and 2 * resolved["pairs"] > resolved["actions"]:
        problems.append(f"pairs: {resolved['pairs']} pairs need {2 * resolved['pairs']} actions per round, "
                        f"but actions is {resolved['actions']}")
    return resolved, problems
