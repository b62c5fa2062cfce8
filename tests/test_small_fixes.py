"""Small fixes from issue 16: singular kind names, `--set ...encoder.name=X` resets
that component's params, Literal[...] choices validated, readers list what they yield."""

from __future__ import annotations

import json

import pytest
from helpers import imported_recipe

CHOICE_PLUGIN = '''
from typing import Literal

import numpy as np

from fusionkit import hookimpl
from fusionkit.components import Adapter


class ChoiceAdapter(Adapter):
    """An adapter with a choice parameter."""

    def __init__(self, method: Literal["pca", "umap"] = "pca", scale: "Literal[1, 2] | None" = None):
        self.method = method
        self.scale = scale

    def fit(self, X, width, rng):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float32)


@hookimpl
def register_adapters(register):
    register("choice-adapter", ChoiceAdapter)
'''


def test_literal_choices_are_checked_at_validation(tmp_path):
    from fusionkit import plugins
    from fusionkit.errors import FusionkitError
    from fusionkit.recipe import load_recipe

    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "choice.py").write_text(CHOICE_PLUGIN)
    system = plugins.load(env={}, plugins_dir=tmp_path / "plug")
    path = imported_recipe(tmp_path, {"rna": (30, 0.0)})
    ok = load_recipe(path, system, ["modalities.rna.adapter.name=choice-adapter",
                                    "modalities.rna.adapter.params.method=umap"])
    assert ok.modalities["rna"].adapter.params == {"method": "umap", "scale": None}
    with pytest.raises(FusionkitError) as exc:
        load_recipe(path, system, ["modalities.rna.adapter.name=choice-adapter",
                                   "modalities.rna.adapter.params.method=pcaa",
                                   "modalities.rna.adapter.params.scale=3"])
    text = str(exc.value)
    assert "modalities.rna.adapter.params.method" in text
    assert "must be one of 'pca', 'umap', got 'pcaa' (did you mean 'pca'?)" in text
    assert "must be one of 1, 2, None, got 3" in text  # a string annotation (Literal | None) too


def test_literal_choices_unit():
    from typing import Literal

    from fusionkit.registry import _literal_choices, _type_problem

    assert _literal_choices("Literal['a', 'b']") == ("a", "b")
    assert _literal_choices("typing.Literal[1] | None") == (1, None)
    assert _literal_choices(Literal["x"]) == ("x",)
    assert _literal_choices("str") is None and _literal_choices(int) is None
    assert _type_problem("a", "a", "Literal['a', 'b']") is None
    assert _type_problem(True, 1, "Literal[1, 2]") is not None  # True == 1, but it is not a choice


def test_set_encoder_name_resets_that_components_params():
    from fusionkit.recipe import apply_overrides

    raw = {"modalities": {"image": {"encoder": {"name": "efficientnet-lite0", "params": {"input_size": 128}},
                                    "adapter": "random-projection"},
                          "text": {"encoder": "sbert"}}}
    out = apply_overrides(raw, ["modalities.image.encoder.name=timm-tile",
                                "modalities.image.encoder.params.model=resnet18",
                                "modalities.text.encoder.name=sbert-mpnet"])
    assert out["modalities"]["image"]["encoder"] == {"name": "timm-tile", "params": {"model": "resnet18"}}
    assert out["modalities"]["text"]["encoder"] == {"name": "sbert-mpnet"}
    same = apply_overrides(raw, ["modalities.image.encoder.name=efficientnet-lite0"])  # same name: params kept
    assert same["modalities"]["image"]["encoder"]["params"] == {"input_size": 128}
    assert raw["modalities"]["image"]["encoder"]["params"] == {"input_size": 128}  # input untouched


def test_readers_say_which_modalities_and_labels_they_yield(plugin_system):
    d = plugin_system.info("reader", "synthetic-tcga").as_dict()
    assert d["modalities"] == ["rna", "mutation", "text", "image"]
    assert {"cancer_type", "subtype", "tmb_class"} <= set(d["labels"])
    assert plugin_system.info("reader", "tcga-folder").as_dict()["labels"][0] == "cancer_type"
    json.dumps(d, default=str)


def test_cli_list_singular_and_describe_reader():
    from click.testing import CliRunner

    from fusionkit.cli import cli

    runner = CliRunner()
    singular, plural = runner.invoke(cli, ["list", "reader"]), runner.invoke(cli, ["list", "readers"])
    assert singular.exit_code == 0 and singular.output == plural.output
    assert "synthetic-tcga" in singular.output and "[rna, mutation, text, image]" in singular.output
    d = runner.invoke(cli, ["describe", "reader", "synthetic-tcga"])
    assert d.exit_code == 0
    assert "modalities: rna, mutation, text, image" in d.output and "labels: cancer_type, subtype" in d.output
    bad = runner.invoke(cli, ["list", "readerz"])
    assert bad.exit_code == 2
