"""The README stays true: its recipe examples validate and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from fusionkit.cli import cli
from fusionkit.recipe import load_recipe

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_recipe_examples_validate(plugin_system, tmp_path):
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S) if b.startswith("schema:")]
    assert blocks, "the README should show a whole recipe"
    for i, block in enumerate(blocks):
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(block)
        load_recipe(path, plugin_system)  # raises RecipeError with every problem


def test_readme_commands_exist():
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", README.read_text(), re.S))
    names = set(re.findall(r"^fusionkit (\w+)", shell, re.M))
    assert {"run", "validate", "list", "describe", "plugins", "query", "results"} <= names
    runner = CliRunner()
    for name in names:
        res = runner.invoke(cli, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
