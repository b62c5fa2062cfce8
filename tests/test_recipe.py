"""Recipe validation: every problem at once, with YAML paths and suggestions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from fusionkit.cli import cli
from fusionkit.errors import RecipeError
from fusionkit.recipe import apply_overrides, load_recipe, load_yaml, validate
from helpers import imported_recipe


def test_valid_recipe_resolves_defaults_and_paths(plugin_system, tmp_path):
    path = imported_recipe(tmp_path)
    rec = load_recipe(path, plugin_system)
    assert set(rec.modalities) == {"rna", "mutation", "text"}
    reader = rec.modalities["rna"].reader
    assert reader.params["inputs"]["rna"]["path"] == str(tmp_path / "rna.npy")  # relative to the recipe
    assert reader.params["id_column"] == "patient_id"  # default filled
    d = rec.to_dict()
    assert d["sampling"]["patients"]["params"]["min_modalities"] == 2
    assert d["aggregator"] == {"name": "sum", "params": {"l2_normalize": False, "center": False, "scale": False}}
    assert d["output"]["dir"] == "runs/imported"


def test_all_errors_reported_together_with_paths_and_suggestions(plugin_system, tmp_path):
    raw = load_yaml(imported_recipe(tmp_path))
    raw["samplng"] = {}
    raw["modalities"]["rna"]["encoder"] = "identty"
    raw["sampling"]["simple"]["params"]["nn"] = 3
    raw["aggregator"] = {"name": "sum", "parms": {}}
    with pytest.raises(RecipeError) as exc:
        validate(raw, plugin_system, path=tmp_path / "recipe.yaml")
    err = exc.value
    text = str(err)
    assert len(err.issues) == 4
    assert "samplng" in text and "did you mean 'sampling'" in text
    assert "modalities.rna.encoder.name" in text and "did you mean 'identity'" in text
    assert "sampling.simple.params.nn" in text and "did you mean 'n'" in text
    assert "aggregator.parms" in text
    assert str(tmp_path / "recipe.yaml") in text


def test_parameter_types_and_required(plugin_system, tmp_path):
    raw = load_yaml(imported_recipe(tmp_path))
    raw["sampling"]["patients"]["params"]["repeats"] = "five"
    with pytest.raises(RecipeError, match="must be an integer"):
        validate(raw, plugin_system, path=tmp_path / "recipe.yaml")


def test_malformed_yaml_names_file_and_line(plugin_system, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodalities:\n  rna: {encoder: identity\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(bad, plugin_system)
    assert f"{bad}:" in str(exc.value) and "malformed YAML" in str(exc.value)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml", plugin_system)


def test_set_overrides(plugin_system, tmp_path):
    path = imported_recipe(tmp_path)
    rec = load_recipe(path, plugin_system, ["sampling.simple.params.n=7", "aggregator=mean", "seed=99",
                                            "aggregator.params.l2_normalize=true"])
    assert rec.sampling["simple"].params["n"] == 7
    assert rec.aggregator.name == "mean" and rec.aggregator.params["l2_normalize"] is True
    assert rec.seed == 99
    raw = apply_overrides({"modalities": {"text": {"encoder": "sbert"}}}, ["modalities.text.encoder.name=other"])
    assert raw["modalities"]["text"]["encoder"] == {"name": "other"}
    with pytest.raises(RecipeError, match="key.path=value"):
        apply_overrides({}, ["nonsense"])


def test_vars_interpolation(plugin_system, tmp_path):
    path = imported_recipe(tmp_path)
    text = path.read_text().replace("seed: 11", "seed: 11\nvars: {n: 9}").replace("n: 40", 'n: "${n}"')
    path.write_text(text)
    assert load_recipe(path, plugin_system).sampling["simple"].params["n"] == 9  # "${n}" alone keeps the type
    path.write_text(text.replace("vars: {n: 9}", "vars: {n: nine}"))
    with pytest.raises(RecipeError, match="sampling.simple.params.n"):
        load_recipe(path, plugin_system)
    path.write_text(text.replace("vars: {n: 9}", "vars: {}"))
    with pytest.raises(RecipeError, match="unknown variable"):
        load_recipe(path, plugin_system)
    path.write_text(text.replace('k: "3..5"', 'k: "${lo}..5"').replace('n: "${n}"', "n: 9").replace(
        "vars: {n: 9}", "vars: {lo: 2}"))
    rec = load_recipe(path, plugin_system)
    assert rec.sampling["simple"].params["k"] == "2..5"
    rec = load_recipe(path, plugin_system, ["vars.lo=4"])
    assert rec.sampling["simple"].params["k"] == "4..5"


def test_validate_cli_json_and_exit_codes(tmp_path):
    path = imported_recipe(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(path), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["valid"] is True
    bad = runner.invoke(cli, ["validate", str(path), "--set", "modalities.text.encoder.name=nope", "--json"])
    assert bad.exit_code == 1
    errors = json.loads(bad.output)["errors"]
    assert errors[0]["where"].endswith("modalities.text.encoder.name")
    usage = runner.invoke(cli, ["validate"])
    assert usage.exit_code == 2


def test_unknown_parameter_rejected_before_any_model_loads(tmp_path):
    """Binding happens on signatures only: no torch import even for a torch encoder."""
    path = imported_recipe(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from fusionkit import plugins
        from fusionkit.recipe import load_recipe
        from fusionkit.errors import RecipeError
        system = plugins.load(env={{}})
        try:
            load_recipe({str(path)!r}, system, ["modalities.rna.encoder.params.nonsense=1"])
        except RecipeError as e:
            print("ERR", "nonsense" in str(e))
        print("TORCH", "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ERR True" in out.stdout, out.stderr
    assert "TORCH False" in out.stdout


def test_nested_component_params_are_validated_and_resolved(plugin_system, tmp_path):
    path = imported_recipe(tmp_path, extra="""tasks:
  sim: {name: similarity, params: {sampling: patients, aggregator: {name: sum, params: {center: true}}}}
""")
    rec = load_recipe(path, plugin_system)
    assert rec.tasks["sim"].params["aggregator"] == {"name": "sum", "params": {"l2_normalize": False, "center": True, "scale": False}}
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, plugin_system, ["tasks.sim.params.aggregator.name=summ"])
    assert "tasks.sim.params.aggregator.name" in str(exc.value) and "did you mean 'sum'" in str(exc.value)
    with pytest.raises(RecipeError, match="tasks.sim.params.aggregator.params.centre"):
        load_recipe(path, plugin_system, ["tasks.sim.params.aggregator.params.centre=true"])
