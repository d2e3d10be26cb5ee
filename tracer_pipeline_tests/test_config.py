import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tracer_pipeline.config import MAX_LENGTH_LIMIT, RunKind, RunSpec, load_experiment, parse_experiment
from tracer_pipeline.errors import ConfigError

GOOD = {
    "name": "red-balloon",
    "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]],
    "seeds": [42, 100, 500],
    "prompts": ["A red balloon floating in a clear blue sky"],
    "embedding_models": ["DummyEmbed"],
    "max_length": 10,
}


def problems(config: dict, tmp_path: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_experiment(config, "test.json", base_dir=tmp_path)
    return info.value.problems


def test_runs_are_networks_times_prompts_times_seeds():
    experiment = parse_experiment(GOOD, "x.json")
    runs = experiment.runs()
    assert len(runs) == 2 * 1 * 3
    assert len({r.run_id for r in runs}) == 6
    assert all(len(r.run_id) == 16 and r.run_id.isalnum() for r in runs)


def test_name_defaults_to_file_name(tmp_path):
    config = dict(GOOD)
    del config["name"]
    path = tmp_path / "my-experiment.json"
    path.write_text(json.dumps(config))
    assert load_experiment(path).name == "my-experiment"


def test_unknown_model_is_named_with_a_suggestion():
    config = {**GOOD, "networks": [["DummyT2I", "DummyI2T"], ["DummyT2l", "DummyI2T"]]}
    assert problems(config) == ['networks[1][0]: unknown model "DummyT2l"; did you mean "DummyT2I"? '
                                "(`trajectory-tracer list-models` lists them)"]


def test_every_problem_is_reported_together():
    config = {**GOOD, "seeds": [1, 1], "prompts": [], "max_length": 0, "colour": "red"}
    found = problems(config)
    assert any(p.startswith("colour: unknown field") for p in found)
    assert "seeds[1]: duplicate seed 1" in found
    assert any(p.startswith("prompts: is empty") for p in found)
    assert any(p.startswith(f"max_length: expected an integer from 1 to {MAX_LENGTH_LIMIT}, got 0") for p in found)


@pytest.mark.parametrize(("change", "expected"), [
    ({"seeds": "42"}, "seeds: expected a list of integers, got a string"),
    ({"seeds": [1.5]}, "seeds[0]: expected an integer from 0 to 2**63-1, got 1.5"),
    ({"seeds": [True]}, "seeds[0]: expected an integer from 0 to 2**63-1, got True"),
    ({"seeds": [-1]}, "seeds[0]: expected an integer from 0 to 2**63-1, got -1"),
    ({"networks": []}, "networks: is empty"),
    ({"networks": [[]]}, "networks[0]: expected a non-empty list of model names, got a list"),
    ({"networks": [["DummyT2I", "DummyT2I2"]]}, "networks[0]: DummyT2I outputs image but DummyT2I2 takes text"),
    ({"networks": [["DummyT2I"]]}, "networks[0]: DummyT2I outputs image but the first model"),
    ({"networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T"]]}, "networks[1]: duplicate network"),
    ({"networks": [["DummyEmbed"]]}, "networks[0][0]: DummyEmbed is an embedding model"),
    ({"prompts": ["a", "a"]}, "prompts[1]: duplicate prompt 'a'"),
    ({"prompts": [""]}, "prompts[0]: expected a non-empty string"),
    ({"embedding_models": ["DummyT2I"]}, "embedding_models[0]: DummyT2I is a text-to-image model"),
    ({"embedding_models": []}, "embedding_models: is empty"),
    ({"max_length": MAX_LENGTH_LIMIT + 1}, f"max_length: expected an integer from 1 to {MAX_LENGTH_LIMIT}"),
    ({"max_length": "10"}, f"max_length: expected an integer from 1 to {MAX_LENGTH_LIMIT}, got '10'"),
    ({"name": "red balloon!"}, "name: 'red balloon!' must be 1-64 letters"),
    ({"stop_when_stuck": "yes"}, "stop_when_stuck: expected true or false"),
    ({"max_homology_dim": 3}, "max_homology_dim: expected 0, 1 or 2"),
    ({"seed_schedule": {"cron": "every day", "new_seeds": 4}}, "seed_schedule.cron: 'every day' is not a valid cron"),
    ({"initial_images": ["x.png"]}, "initial_images: no network starts with an image-to-text model"),
])
def test_bad_input_gives_its_message(change, expected):
    found = problems({**GOOD, **change})
    assert any(p.startswith(expected) for p in found), found


def test_missing_required_fields():
    found = problems({"name": "x"})
    for key in ("networks", "seeds", "embedding_models", "max_length"):
        assert f"{key}: missing (required)" in found


def test_malformed_json_gives_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "name": "x",\n  "seeds": [1,,2]\n}')
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert "malformed JSON at line 3, column 15" in str(info.value)
    assert str(path) in str(info.value)


def test_image_first_network_needs_existing_initial_images(tmp_path):
    config = {**GOOD, "networks": [["DummyI2T", "DummyT2I"]], "initial_images": ["missing.png"]}
    del config["prompts"]
    found = problems(config, tmp_path)
    assert any(p.startswith("initial_images[0]: file not found:") and "missing.png" in p for p in found)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "start.png")
    config["initial_images"] = ["start.png"]
    runs = parse_experiment(config, "x", base_dir=tmp_path).runs()
    assert len(runs) == 3 and all(r.prompt is None and r.initial_image_sha256 for r in runs)


def test_embedding_model_must_embed_some_output(monkeypatch):
    import dataclasses

    from tracer_pipeline.models import registry

    embeds_nothing = dataclasses.replace(registry.get_model("DummyEmbed"), name="NoModalityEmbed", embeds=frozenset())
    monkeypatch.setitem(registry._BY_NAME, "NoModalityEmbed", embeds_nothing)
    found = problems({**GOOD, "embedding_models": ["NoModalityEmbed"]})
    assert any("NoModalityEmbed embeds" in p and "networks[0] outputs only image, text" in p for p in found)


def test_run_identity():
    a = RunSpec(("DummyT2I", "DummyI2T"), 42, prompt="a red balloon")
    assert a.run_id == RunSpec(("DummyT2I", "DummyI2T"), 42, prompt="a red balloon").run_id
    assert a.run_id != RunSpec(("DummyT2I", "DummyI2T"), 43, prompt="a red balloon").run_id
    assert a.run_id != RunSpec(("DummyT2I", "DummyI2T2"), 42, prompt="a red balloon").run_id
    assert a.run_id != RunSpec(("DummyT2I", "DummyI2T"), 42, prompt="a red balloon ").run_id
    short = parse_experiment({**GOOD, "max_length": 10}, "a").runs()
    long = parse_experiment({**GOOD, "name": "other", "max_length": 20}, "b").runs()
    assert [r.run_id for r in short] == [r.run_id for r in long]  # max_length is not part of it


def test_run_identity_is_the_same_in_another_process():
    here = RunSpec(("DummyT2I", "DummyI2T"), 7, prompt="a cat").run_id
    code = ("from tracer_pipeline.config import RunSpec;"
            "print(RunSpec(('DummyT2I', 'DummyI2T'), 7, prompt='a cat').run_id)")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


# self-consuming runs ---------------------------------------------------------------------------

def test_network_run_ids_are_unchanged_by_the_self_consuming_kind() -> None:
    assert RunSpec(("DummyT2I", "DummyI2T"), 42, prompt="A red balloon floating in a clear blue sky").run_id \
        == "85d95aa9bb141a84"
    assert RunSpec(("SceneT2I", "SceneI2TSampled"), 2,
                   prompt="a large red circle on the left and a small blue square at the top").run_id \
        == "8180c9af14f88b59"
    assert RunSpec(("DummyI2T", "DummyT2I"), 7, initial_image_path="x.png",
                   initial_image_sha256="ab" * 32).run_id == "cfd3ac43e31a6666"


def _self_consuming(entries, **extra):
    return parse_experiment({"name": "sc", "self_consuming": entries, "seeds": [1, 2],
                             "embedding_models": ["DummyEmbed"], "max_length": 6, **extra}, "sc.json")


def test_self_consuming_runs_are_entries_times_seeds_and_options_enter_their_identity() -> None:
    exp = _self_consuming([{"generator": "DigitsVAE"}, {"generator": "DigitsVAE", "epochs": 7}])
    runs = exp.runs()
    assert [r.kind for r in runs] == [RunKind.SELF_CONSUMING] * 4
    assert len({r.run_id for r in runs}) == 4
    spec = runs[2].canonical()
    assert spec["kind"] == "self_consuming" and spec["generator"]["params"]["epochs"] == 7
    # Giving a default explicitly names the same run.
    assert _self_consuming([{"generator": "DigitsVAE", "epochs": 50}]).runs()[0].run_id == runs[0].run_id


def test_bad_self_consuming_entries_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        _self_consuming([{"generator": "DigitsVAE", "epochs": 0, "colour": 1}, {"generator": "SDTurbo"},
                         {"generator": "DigitsVEA"}], embedding_models=["DummyEmbed"])
    text = str(caught.value)
    assert "self_consuming[0].epochs: expected an integer from 1 to 1000" in text
    assert "self_consuming[0].colour: not an option of DigitsVAE" in text
    assert "self_consuming[1].generator: SDTurbo is a text-to-image model" in text
    assert 'self_consuming[2].generator: unknown model "DigitsVEA"; did you mean "DigitsVAE"?' in text


def test_a_generator_is_not_a_network_model() -> None:
    from tracer_pipeline.config import parse_experiment
    with pytest.raises(ConfigError, match=r'networks\[0\]\[0\]: DigitsVAE is a self-consuming generator'):
        parse_experiment({"networks": [["DigitsVAE"]], "seeds": [1], "embedding_models": ["DummyEmbed"],
                          "max_length": 3}, "x.json", default_name="x")


def test_a_name_ending_in_a_newline_is_rejected():
    with pytest.raises(ConfigError, match=r"name: 'quick\\n' must be 1-64 letters"):
        parse_experiment({**GOOD, "name": "quick\n"}, "x.json")


def test_duplicate_keys_and_deep_nesting_are_config_errors(tmp_path):
    duplicate = tmp_path / "dup.json"
    duplicate.write_text('{"name": "a", "seeds": [1], "seeds": [2]}')
    with pytest.raises(ConfigError, match="duplicate key 'seeds'"):
        load_experiment(duplicate)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_experiment(deep)


def test_a_decompression_bomb_initial_image_is_a_config_error(tmp_path):
    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")  # 400 Mpx, a few KB on disk
    config = {**GOOD, "networks": [["DummyI2T", "DummyT2I"]], "initial_images": ["bomb.png"]}
    del config["prompts"]
    (tmp_path / "bomb.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"initial_images\[0\]: .*bomb.png is too large to decode safely"):
        load_experiment(tmp_path / "bomb.json")
