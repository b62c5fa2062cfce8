"""docs/PLUGINS.md stays true: every snippet in it runs, top to bottom, in an empty folder.

Conventions (documented in the guide, "How this page is tested"):
``python|yaml|toml file=PATH`` blocks are written to PATH; ``python run`` and
``bash run`` blocks are executed in document order; a plain ``bash`` block
(install commands) is checked for fusionkit subcommands that exist, and the
test performs its equivalent offline (a ``pip install --target``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import fusionkit

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "PLUGINS.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
HEAVY = ("torch", "sklearn", "faiss", "sentence_transformers", "timm", "pandas", "matplotlib", "h5py")
PUBLIC_SUBMODULES = {"metrics", "training"}
GUIDE_COMPONENTS = {("reader", "my-csv-matrix"), ("encoder", "my-pca"), ("encoder", "my-token-table"),
                    ("task", "my-centroid")}


def snippets() -> list[dict]:
    """Fenced blocks of the guide: language, attributes (file=..., run), body, line number."""
    text = GUIDE.read_text()
    out = []
    for m in FENCE.finditer(text):
        words = m.group(1).split()
        lang = words[0] if words else ""
        attrs = dict(w.split("=", 1) if "=" in w else (w, True) for w in words[1:])
        out.append({"lang": lang, "attrs": attrs, "body": m.group(2), "line": text[:m.start()].count("\n") + 1})
    return out


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONKIT_") and k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PYTHONHASHSEED="0",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra)
    return env


def run_snippet(block: dict, folder: Path, index: int) -> subprocess.CompletedProcess:
    if block["lang"] == "python":
        script = folder / f".snippet_{index}.py"
        script.write_text(block["body"])
        cmd = [sys.executable, str(script)]
    else:
        cmd = ["bash", "-euo", "pipefail", "-c", block["body"]]
    res = subprocess.run(cmd, cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (f"docs/PLUGINS.md:{block['line']}: {block['lang']} run block failed\n"
                                 f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture(scope="module")
def guide_folder(tmp_path_factory) -> dict:
    """Write and run every block of the guide in order, in one empty folder."""
    folder = tmp_path_factory.mktemp("guide")
    outputs = []
    for i, block in enumerate(snippets()):
        if "file" in block["attrs"]:
            path = folder / block["attrs"]["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block["body"])
        elif block["attrs"].get("run"):
            outputs.append(run_snippet(block, folder, i))
    return {"folder": folder, "outputs": outputs}


# ----------------------------------------------------------------------------- the page itself

def test_every_snippet_is_runnable_or_written():
    blocks = snippets()
    assert len(blocks) >= 12
    for b in blocks:
        where = f"docs/PLUGINS.md:{b['line']}"
        assert b["lang"] in ("python", "yaml", "toml", "bash", "text"), f"{where}: unexpected language {b['lang']!r}"
        if b["lang"] in ("python", "yaml", "toml"):
            assert ("file" in b["attrs"]) != bool(b["attrs"].get("run")), \
                f"{where}: a {b['lang']} block needs exactly one of file=PATH or run"
            assert b["lang"] == "python" or "file" in b["attrs"], f"{where}: only python and bash blocks run"
        if b["lang"] == "bash" and not b["attrs"].get("run"):
            for line in filter(None, (ln.split("#")[0].strip() for ln in b["body"].splitlines())):
                words = [w for w in shlex.split(line) if "=" not in w]
                assert words[0] in ("pip", "fusionkit"), f"{where}: unexpected command {line!r}"
    kinds = {(b["lang"], "file" in b["attrs"]) for b in blocks}
    assert {("python", True), ("python", False), ("yaml", True), ("toml", True), ("bash", False)} <= kinds


def test_plain_bash_commands_exist():
    from click.testing import CliRunner

    from fusionkit.cli import cli

    names = set()
    for b in snippets():
        if b["lang"] == "bash":
            names |= set(re.findall(r"(?:^|\s)fusionkit (\w+)", b["body"]))
    assert {"validate", "run", "list", "plugins"} <= names
    for name in sorted(names):
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)


def test_one_import_table_lists_the_whole_plugin_api():
    text = GUIDE.read_text()
    table = text[text.index("## One import"):text.index("Each hook receives")]
    missing = [name for name in fusionkit.__all__ if f"`{name}`" not in table]
    assert not missing, f"docs/PLUGINS.md 'One import' does not list {missing}"


def test_run_context_table_names_every_public_member():
    import inspect

    from fusionkit import RunContext

    text = GUIDE.read_text()
    table = text[text.index("What a task gets"):text.index("A unit's function")]
    members = {n for n, _ in inspect.getmembers(RunContext) if not n.startswith("_")}
    members |= set(re.findall(r"self\.([a-z]\w*)\s*[:=]", inspect.getsource(RunContext.__init__)))
    missing = sorted(n for n in members if f"ctx.{n}" not in table)
    assert not missing, f"docs/PLUGINS.md, the RunContext table does not name {missing}"


def test_plugin_snippets_use_only_the_public_api():
    plugin_blocks = [b for b in snippets() if str(b["attrs"].get("file", "")).startswith("plugins/")]
    assert len(plugin_blocks) == 4
    public = set(fusionkit.__all__)
    for b in plugin_blocks:
        where = f"docs/PLUGINS.md:{b['line']} ({b['attrs']['file']})"
        tree = ast.parse(b["body"])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fusionkit":
                if node.module == "fusionkit":
                    bad = [a.name for a in node.names if a.name not in public]
                    assert not bad, f"{where}: {bad} are not in fusionkit.__all__"
                else:
                    assert node.module.split(".", 1)[1] in PUBLIC_SUBMODULES, f"{where}: imports {node.module}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    assert parts[0] != "fusionkit" or (len(parts) == 2 and parts[1] in PUBLIC_SUBMODULES), \
                        f"{where}: imports {alias.name}"
        for node in tree.body:  # module level: no heavy import
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            heavy = [n for n in names if n.split(".")[0] in HEAVY]
            assert not heavy, f"{where}: module-level import of {heavy} (import it inside the method)"


# ----------------------------------------------------------------------------- what running it produced

def test_recipe_runs_end_to_end_with_the_guide_plugins(guide_folder):
    run = guide_folder["folder"] / "runs" / "guide"
    metrics = json.loads((run / "metrics.json").read_text())
    acc = metrics["centroid"]["summary"]["accuracy"]
    assert metrics["centroid"]["task"] == "my-centroid"
    assert acc["n"] == 4 and 0.5 < acc["mean"] <= 1.0  # three cancers with a clear signal: far above chance
    assert acc["ci_low"] <= acc["mean"] <= acc["ci_high"]
    rows = (run / "centroid" / "repeats.csv").read_text().splitlines()
    assert rows[0].split(",") == ["repeat", "accuracy", "n_test"] and len(rows) == 5
    assert (run / "centroid" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "my-centroid" in (run / "report.html").read_text()
    mods = json.loads((run / "data_summary.json").read_text())["modalities"]
    assert {m: mods[m]["patients"] for m in mods} == {"rna": 60, "text": 60, "tiles": 30}
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "ok"
    assert set(record["inputs"]) == {"modalities.rna.reader (my-csv-matrix)", "modalities.text.reader (report-text)",
                                     "modalities.tiles.reader (precomputed)"}


def test_stores_record_each_modality_encoder(guide_folder):
    stores = guide_folder["folder"] / "runs" / "guide" / "cache" / "stores"
    metas = {p.name.split("-")[0] + ":" + json.loads((p / "meta.json").read_text())["provenance"]["encoder"]["name"]:
             json.loads((p / "meta.json").read_text()) for p in stores.iterdir() if (p / "meta.json").exists()}
    assert {"rna:my-pca", "text:my-token-table", "tiles:identity"} <= set(metas)
    assert metas["rna:my-pca"]["n"] == 60 and metas["rna:my-pca"]["dim"] == 16
    assert metas["text:my-token-table"]["provenance"]["encoder"]["output_dim"] == 32  # then the adapter: 16
    assert metas["text:my-token-table"]["dim"] == 16
    assert metas["tiles:identity"]["n"] == 60


def test_fitted_encoder_state_is_what_save_wrote(guide_folder):
    import numpy as np

    model = sorted((guide_folder["folder"] / "runs" / "guide" / "cache" / "work").glob("rna-*/model"))
    assert len(model) == 3  # first run, whiten=true, edited code (the caching section)
    for folder in model:
        assert (folder / "DONE").exists()
        assert np.load(folder / "components_.npy").shape == (16, 40)
        assert json.loads((folder / "params.json").read_text())["dim"] == 16


def test_precomputed_layouts_are_read(guide_folder):
    mods = json.loads((guide_folder["folder"] / "runs" / "precomputed" / "data_summary.json").read_text())["modalities"]
    assert set(mods) == {"tiles", "rna", "annotations"}
    assert mods["tiles"]["items"] == 60 and mods["tiles"]["patients"] == 30
    assert mods["rna"]["items"] == 20 and mods["rna"]["patients"] == 20  # barcodes cut to 12 characters
    agg = guide_folder["folder"] / "runs" / "precomputed" / "aggregates" / "mixed"
    assert (agg / "X.npy").exists()


def test_conformance_tests_of_the_guide_passed(guide_folder):
    outs = [o.stdout for o in guide_folder["outputs"] if "passed" in o.stdout]
    assert outs and re.search(r"\b6 passed\b", outs[-1]), outs


# ----------------------------------------------------------------------------- claims made in prose

def test_validate_checks_the_task_cross_reference_and_imports_no_torch(guide_folder):
    folder = guide_folder["folder"]
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "fusionkit", "validate", "recipe.yaml",
                          "--plugins-dir", "plugins", "--strict"], cwd=folder, env=clean_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines()
                if line.startswith("import time:")}
    assert len(imported) > 20 and not imported & {"torch", "pandas", "matplotlib", "sklearn", "h5py"}
    res = subprocess.run(["fusionkit", "validate", "recipe.yaml", "--plugins-dir", "plugins",
                          "--set", "tasks.centroid.params.sampling=nope"], cwd=folder, env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert "tasks.centroid.params.sampling" in res.stderr + res.stdout
    assert "no sampling entry named 'nope'" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr
    res = subprocess.run(["fusionkit", "validate", "recipe.yaml", "--plugins-dir", "plugins",
                          "--set", "tasks.centroid.params.test_fraction=1.5",
                          "--set", "modalities.rna.encoder.params.dim=0"],
                         cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=120)
    out = res.stderr + res.stdout
    assert res.returncode == 1 and "Traceback" not in out
    assert "tasks.centroid.params.test_fraction" in out and "modalities.rna.encoder.params.dim" in out, out
    # the declared weights: validate says what is missing offline, and loads nothing
    res = subprocess.run(["fusionkit", "validate", "recipe.yaml", "--plugins-dir", "plugins",
                          "--set", "modalities.text.encoder.params.weights_file=models/absent.npy"],
                         cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "modalities.text.encoder (my-token-table): weights not available offline" in res.stderr
    assert "absent.npy" in res.stderr and "fix: set weights_file" in res.stderr


def test_guide_package_installs_through_the_entry_point_group(guide_folder, tmp_path):
    folder = guide_folder["folder"]
    target = tmp_path / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(target), str(folder)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]

    def fk(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["fusionkit", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env=clean_env(PYTHONPATH=str(target), **env))

    plugins = {p["name"]: p for p in json.loads(fk("plugins", "--json").stdout)}
    for name in ("my_csv_matrix", "my_pca", "my_token_table", "my_centroid"):
        assert plugins[name]["status"] == "ok" and plugins[name]["dist"] == "guide-plugins"
        assert plugins[name]["version"] == "0.1.0"
    encoders = {e["name"]: e for e in json.loads(fk("list", "encoders", "--json").stdout)}
    assert encoders["my-pca"]["provider"] == "guide-plugins" and encoders["my-token-table"]["modality"] == "text"
    blocked = fk("plugins", "--json", FUSIONKIT_PLUGINS_BLOCK="guide-plugins")
    blocked = {p["name"]: p["status"] for p in json.loads(blocked.stdout)}
    assert {blocked[n] for n in ("my_csv_matrix", "my_pca", "my_token_table", "my_centroid")} == {"disabled"}
    res = fk("list", "encoders", "--json", FUSIONKIT_PLUGINS_BLOCK="guide-plugins")
    assert "my-pca" not in {e["name"] for e in json.loads(res.stdout)}



def test_readme_plugin_snippet_registers_and_conforms(tmp_path):
    from fusionkit import ModalityData, check_component, plugins

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Plugins\n"):]
    section = section[:section.index("\n## ", 1)]
    code = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(code) == 1 and "from fusionkit import" in code[0]
    assert "docs/PLUGINS.md" in section
    (tmp_path / "readme_plugin.py").write_text(code[0])
    system = plugins.load(plugins_dir=tmp_path, env={}, strict=True)
    info = system.info("encoder", "word-hash")
    check_component(info)
    encoder = system.create("encoder", "word-hash", {"dim": 8})
    X = encoder.encode(ModalityData("text", "text", ["P1", "P2"], ["a", "b"], ["A tumour", "a TUMOUR"]))
    assert X.shape == (2, 8) and X.dtype.name == "float32" and (X[0] == X[1]).all() and X.sum() == 4


def test_readme_layout_names_every_room():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Layout\n"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    core = {p.name for p in (REPO / "fusionkit").glob("*.py") if p.name not in ("__main__.py",)}
    core |= {p.name + "/" for p in (REPO / "fusionkit").iterdir() if (p / "__init__.py").exists()}
    rooms = {str(p.parent.relative_to(REPO / "plugins")) + "/" for p in (REPO / "plugins").glob("**/__init__.py")
             if p.parent != REPO / "plugins" and "__pycache__" not in p.parts}
    missing = sorted(name for name in core | rooms if name not in section)
    assert not missing, f"README 'Layout' does not describe: {missing}"
