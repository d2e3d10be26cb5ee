"""Network entries with model options: validation, defaults, run identity, list-models."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from tracer_pipeline.cli import cli
from tracer_pipeline.config import load_experiment, parse_experiment
from tracer_pipeline.errors import ConfigError

BASE = {"name": "guided", "seeds": [1], "prompts": ["a large red circle in the centre"],
        "embedding_models": ["SceneCLIP"], "max_length": 2}


def experiment(*entries, **extra):
    return parse_experiment({**BASE, "networks": [[*entries, "SceneI2T"]], **extra}, "guided.json")


def run_id(*entries) -> str:
    return experiment(*entries).runs()[0].run_id


def test_a_model_named_alone_and_given_its_defaults_is_the_same_run():
    bare = run_id("CLIPGuided")
    assert run_id({"model": "CLIPGuided"}) == bare
    assert run_id({"model": "CLIPGuided", "steps": 100, "cutouts": 8}) == bare


@pytest.mark.parametrize("option, value", [
    ("steps", 20), ("lr", 0.2), ("cutouts", 4), ("cut_min", 0.5), ("rotate_deg", 0.0), ("skew", 0.0),
    ("blur", 0.0), ("prompt_right", "a blue star"), ("blend", 1.0), ("tone_symmetry", 1.0),
    ("semantic_symmetry", 0.2), ("tv", 0.1), ("frames", 4), ("restarts", 2), ("width", 128), ("shapes", 2),
])
def test_every_option_that_changes_outputs_changes_the_run(option, value):
    assert run_id({"model": "CLIPGuided", option: value}) != run_id("CLIPGuided")


def test_the_resolved_options_are_the_models_params_in_the_specification():
    spec = experiment({"model": "CLIPGuided", "steps": 20}).runs()[0].canonical()
    guided, captioner = spec["network"]
    assert guided["name"] == "CLIPGuided" and guided["params"]["steps"] == 20
    assert guided["params"]["cutouts"] == 8  # defaults filled in
    assert captioner == {"name": "SceneI2T", "params": {"decoding": "greedy", "temperature": 0.0}}


def test_networks_without_options_keep_their_run_ids():
    config = {"name": "x", "networks": [["DummyT2I", "DummyI2T"], ["SceneT2I", "SceneI2TSampled"]], "seeds": [42],
              "prompts": ["A red balloon floating in a clear blue sky"], "embedding_models": ["DummyEmbed"],
              "max_length": 2}
    runs = parse_experiment(config, "x").runs()
    assert [r.model_options for r in runs] == [(), ()]
    assert runs[0].run_id == "85d95aa9bb141a84"  # the id pinned before entries could carry options
    mixed = parse_experiment({**config, "networks": [["DummyT2I", "DummyI2T"], ["CLIPGuided", "SceneI2T"]],
                              "embedding_models": ["SceneCLIP"]}, "x").runs()
    assert mixed[0].run_id == "85d95aa9bb141a84" and mixed[0].model_options == ()


def test_bad_options_are_reported_together_naming_the_file_network_and_option(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**BASE, "networks": [
        [{"model": "CLIPGuided", "stepz": 3, "lr": "fast", "cut_min": 2.0}, "SceneI2T"],
        [{"model": "SceneI2T", "temperature": 1.0}, "CLIPGuided"],
        [{"model": "CLIPGuided", "cut_min": 0.9, "cut_max": 0.5}, "SceneI2T"],
        [{"model": "CLIPGuided", "init_image": "missing.png"}, "SceneI2T"],
        [{"steps": 3}, "SceneI2T"],
    ]}))
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "networks[0][0] (CLIPGuided) option stepz: not an option of CLIPGuided" in message
    assert "networks[0][0] (CLIPGuided) option lr: expected a number from 1e-05 to 10" in message
    assert "got 'fast'" in message
    assert "networks[0][0] (CLIPGuided) option cut_min: expected a number from 0.05 to 1" in message
    assert "networks[1][0] (SceneI2T) option temperature: not an option of SceneI2T (its options: none)" in message
    assert "networks[2][0] (CLIPGuided) option cut_min: 0.9 is larger than cut_max 0.5" in message
    assert f"networks[3][0] (CLIPGuided) option init_image: file not found: {tmp_path / 'missing.png'}" in message
    assert 'networks[4][0]: expected a model name or {"model": NAME, …options}' in message


def test_an_init_image_enters_the_identity_by_its_pixels(tmp_path):
    Image.new("RGB", (8, 8), (128, 128, 128)).save(tmp_path / "grey.png")
    path = tmp_path / "guided.json"
    path.write_text(json.dumps({**BASE, "networks": [[{"model": "CLIPGuided", "init_image": "grey.png"}, "SceneI2T"]]}))
    first = load_experiment(path).runs()[0]
    params = first.canonical()["network"][0]["params"]
    assert params["init_image"] == str(tmp_path / "grey.png") and len(params["init_image_sha256"]) == 64
    Image.new("RGB", (8, 8), (20, 20, 20)).save(tmp_path / "grey.png")
    assert load_experiment(path).runs()[0].run_id != first.run_id


def test_two_networks_that_differ_only_in_options_are_two_networks():
    exp = parse_experiment({**BASE, "networks": [[{"model": "CLIPGuided", "steps": 10}, "SceneI2T"],
                                                 [{"model": "CLIPGuided", "steps": 20}, "SceneI2T"]]}, "x")
    assert len({r.run_id for r in exp.runs()}) == 2
    with pytest.raises(ConfigError, match="duplicate network .* with the same options"):
        parse_experiment({**BASE, "networks": [["CLIPGuided", "SceneI2T"],
                                               [{"model": "CLIPGuided", "steps": 100}, "SceneI2T"]]}, "x")


def test_list_models_shows_each_models_options_and_defaults(settings):
    runner = CliRunner()
    text = runner.invoke(cli, ["--data-dir", str(settings.data_dir), "list-models"])
    assert text.exit_code == 0, text.output
    assert 'CLIPGuided options (in a network: {"model": "CLIPGuided", <option>: value}):' in text.output
    assert any(line.split()[:2] == ["steps", "100"] for line in text.output.splitlines())
    rows = json.loads(runner.invoke(cli, ["--data-dir", str(settings.data_dir), "list-models", "--json"]).output)
    by_name = {r["name"]: r for r in rows}
    assert by_name["CLIPGuided"]["options"]["prompt_right"]["default"] is None
    assert by_name["CLIPGuided"]["options"]["steps"] == {
        "default": 100, "accepts": "an integer from 1 to 10000", "meaning": "optimisation steps (Adam)"}
    assert by_name["SceneI2T"]["options"] == {}


def test_the_shipped_experiment_is_valid_and_guides_the_faithful_captioner():
    shipped = load_experiment(Path(__file__).parents[2] / "experiments" / "clip-guided-scenes.json")
    assert shipped.networks[0] == ("CLIPGuided", "SceneI2T")
    assert dict(shipped.network_options[1][0])["prompt_right"] == "a large blue square in the centre"
    assert len({r.run_id for r in shipped.runs()}) == 8
