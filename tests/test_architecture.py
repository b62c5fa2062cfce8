"""The floor plan holds: no import cycle, size limits, one way in for plugins,
declared component contracts, parameters bound once, no domain words in the engine."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fusionkit

REPO = Path(__file__).resolve().parents[1]
#: import name prefix -> folder (``plugins/`` is imported as ``fusionkit_plugins``)
ROOTS = {"fusionkit": REPO / "fusionkit", "fusionkit_plugins": REPO / "plugins"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
EXEMPT = "# size-exempt:"
#: public submodules a plugin may import besides the names in ``fusionkit.__all__``
PUBLIC_SUBMODULES = {"fusionkit.metrics", "fusionkit.training"}


# ----------------------------------------------------------------------------- import graph

def module_files(roots: dict[str, Path]) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the roots."""
    out = {}
    for prefix, folder in roots.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST, *, type_checking: bool = False) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, inside functions and classes too. Imports under
    ``if TYPE_CHECKING:`` never run: they are left out unless ``type_checking``."""
    out: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            for child in node.orelse:
                visit(child)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name of ``from <node.module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _lazy_exports(modules: dict[str, Path]) -> dict[str, str]:
    """``fusionkit.__init__``'s lazily re-exported names -> the module defining them."""
    tree = ast.parse(modules["fusionkit"].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "_EXPORTS":
            table = ast.literal_eval(node.value)
            return {name: f"fusionkit.{mod}" if mod else f"fusionkit.{name}" for name, mod in table.items()}
    return {}


def import_graph(roots: dict[str, Path]) -> dict[str, set[str]]:
    """module -> modules of the roots it imports (at module level or inside functions).

    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at
    ``pkg``; ``from fusionkit import Name`` points at the module that defines a
    lazily exported ``Name`` (importing it runs that module). Implicit imports of
    parent packages are not edges (every submodule would otherwise depend on
    its package's ``__init__``).
    """
    modules = module_files(roots)
    lazy = _lazy_exports(modules) if "fusionkit" in modules else {}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in import_nodes(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [_deepest(alias.name, modules) for alias in node.names]
            else:
                base = _absolute(module, path, node)
                targets = [_from_target(base, alias.name, modules, lazy) for alias in node.names]
            graph[module].update(t for t in targets if t and t != module)
    return graph


def _deepest(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in modules:
            return ".".join(parts[:i])
    return None


def _from_target(base: str, name: str, modules: dict[str, Path], lazy: dict[str, str]) -> str | None:
    if f"{base}.{name}" in modules:
        return f"{base}.{name}"
    if base == "fusionkit" and name in lazy:
        return lazy[name]
    return _deepest(base, modules)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def test_no_import_cycle_in_fusionkit_or_plugins():
    graph = import_graph(ROOTS)
    assert len(graph) > 40 and graph["fusionkit.engine"] >= {"fusionkit.context", "fusionkit.encode"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_sees_imports_inside_functions_and_skips_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
                              "def f():\n    from . import b\n")
    (pkg / "b.py").write_text("import pkg.sub.deep\n")
    (pkg / "sub").mkdir()
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("class X:\n    def m(self):\n        from ..a import f\n")
    (pkg / "c.py").write_text("from .a import f\n")
    graph = import_graph({"pkg": pkg})
    assert graph["pkg.a"] == {"pkg.b"}  # the TYPE_CHECKING import of pkg.c is not an edge
    assert graph["pkg.sub.deep"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.deep", "pkg.a"]
    (pkg / "sub" / "deep.py").write_text("X = 1\n")
    assert find_cycle(import_graph({"pkg": pkg})) is None


# ----------------------------------------------------------------------------- size limits

def size_offenders(roots: dict[str, Path]) -> list[str]:
    """``file: N lines`` for modules over the limit, ``file:function:N lines`` for functions;
    a ``# size-exempt: <reason>`` comment exempts a module (in its first 5 lines) or a
    function (on its ``def`` line or the rest of its signature)."""
    out = []
    for path in sorted(p for folder in roots.values() for p in folder.rglob("*.py")):
        lines = path.read_text().splitlines()
        rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        if len(lines) > MAX_MODULE_LINES and not _exempt(lines[:5]):
            out.append(f"{rel}: {len(lines)} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse("\n".join(lines), filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            signature = lines[node.lineno - 1: node.body[0].lineno - 1] or [lines[node.lineno - 1]]
            if length > MAX_FUNCTION_LINES and not _exempt(signature):
                out.append(f"{rel}:{node.name}:{length} lines (max {MAX_FUNCTION_LINES})")
    return out


def _exempt(lines: list[str]) -> bool:
    """A marker with a stated reason (at least a few words), not a bare marker."""
    for line in lines:
        if EXEMPT in line and len(line.split(EXEMPT, 1)[1].strip()) >= 10:
            return True
    return False


def test_module_and_function_sizes():
    offenders = size_offenders(ROOTS)
    assert not offenders, "over the size limits:\n" + "\n".join(offenders)


def test_size_check_finds_long_functions_and_honours_reasoned_exemptions(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(70))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n"
                                   f"def excused():  {EXEMPT} a generated lookup table, split it and it reads worse\n"
                                   f"{body}\n\ndef bare():  {EXEMPT}\n{body}\n")
    found = size_offenders({"m": tmp_path})
    assert [f.split(":", 1)[1] for f in found] == ["long:71 lines (max 60)", "bare:71 lines (max 60)"]


# ----------------------------------------------------------------------------- one way in

def plugin_imports_outside_api(root: Path) -> list[str]:
    """``file:line: import`` for every import of fusionkit by a plugin file that goes
    around ``fusionkit.__all__`` (TYPE_CHECKING imports included)."""
    allowed = set(fusionkit.__all__)
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in import_nodes(ast.parse(path.read_text()), type_checking=True):
            if isinstance(node, ast.Import):
                bad = [a.name for a in node.names if a.name.startswith("fusionkit.")
                       and a.name not in PUBLIC_SUBMODULES]
            elif node.level or not (node.module == "fusionkit" or (node.module or "").startswith("fusionkit.")):
                continue
            elif node.module == "fusionkit":
                bad = [f"fusionkit.{a.name}" for a in node.names if a.name not in allowed]
            else:
                bad = [] if node.module in PUBLIC_SUBMODULES else [node.module]
            out += [f"{path.relative_to(root.parent)}:{node.lineno}: {name}" for name in bad]
    return out


def test_builtin_plugins_import_only_the_public_api():
    offenders = plugin_imports_outside_api(ROOTS["fusionkit_plugins"])
    assert not offenders, ("built-in plugins must import from fusionkit only names in fusionkit.__all__ "
                           "(and fusionkit.metrics / fusionkit.training):\n" + "\n".join(offenders))


def test_public_api_names_resolve():
    for name in fusionkit.__all__:
        assert getattr(fusionkit, name) is not None, name
    from fusionkit.context import RunContext

    assert fusionkit.RunContext is RunContext and fusionkit.Encoder.__module__ == "fusionkit.components"


def test_api_check_flags_private_imports(tmp_path):
    root = tmp_path / "plugins"
    root.mkdir()
    (root / "ok.py").write_text("from fusionkit import Encoder, hookimpl\nfrom fusionkit.metrics import mean_ci\n")
    (root / "bad.py").write_text("def f():\n    from fusionkit.engine import run\n    from fusionkit import _EXPORTS\n"
                                 "import fusionkit.store\n")
    assert plugin_imports_outside_api(root) == [
        "plugins/bad.py:2: fusionkit.engine", "plugins/bad.py:3: fusionkit._EXPORTS",
        "plugins/bad.py:4: fusionkit.store"]


# ----------------------------------------------------------------------------- typed context

def test_core_never_types_the_context_as_any():
    untyped = []
    for path in sorted(ROOTS["fusionkit"].rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "ctx" and arg.annotation is not None and "Any" in ast.unparse(arg.annotation):
                        untyped.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name}")
    assert not untyped, "annotate ctx as RunContext (import it under TYPE_CHECKING):\n" + "\n".join(untyped)


# ----------------------------------------------------------------------------- declared contracts

def _info(kind: str, factory, name: str = "x-test"):
    from fusionkit.registry import ComponentInfo

    return ComponentInfo(kind=kind, name=name, factory=factory, plugin="test", metadata={"licence": "MIT"})


class _Enc(fusionkit.Encoder):
    """A test encoder."""

    card = {"licence": "MIT", "weights_source": "none"}

    def __init__(self, dim: int = 4):
        self.dim = dim

    def encode(self, data, ctx=None):
        return np.zeros((len(data), self.dim), dtype=np.float32)


def test_core_reads_only_declared_component_attributes():
    """Everything the engine, pool and recipe read has a default on the base class."""
    from fusionkit import Aggregator, Component, Encoder, Reader

    assert (Encoder.trainable, Encoder.shard_size, Encoder.wants_gpu, Encoder.input_kind) == (False, 4096, None, "matrix")
    assert (Aggregator.linear, Aggregator.center, Aggregator.l2_normalize) == (False, False, False)
    assert Reader.provides == () and Component.component_params == {} and Component.check_recipe({}, None) == []
    assert _Enc().gpu_wanted() is False
    assert type("Img", (_Enc,), {"input_kind": "image"})().gpu_wanted() is True
    declared = {"center", "wants_gpu", "trainable", "shard_size", "input_kind", "modality", "card", "check_recipe",
                "linear", "l2_normalize", "provides", "yields_labels", "component_params", "apply_to", "gpu"}
    hidden = []
    for path in sorted(ROOTS["fusionkit"].rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and node.args[1].value in declared):
                hidden.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not hidden, "read declared attributes directly (they have defaults on the base classes):\n" + "\n".join(hidden)


def test_check_component_enforces_the_encoder_contract():
    from fusionkit.testing import check_component

    check_component(_info("encoder", _Enc))
    fits = type("Fits", (_Enc,), {"__doc__": "Fits.", "fit": lambda self, data, ctx=None: self})
    with pytest.raises(AssertionError, match="defines fit\\(\\) but is not declared trainable"):
        check_component(_info("encoder", fits))
    trainable = type("Trains", (fits,), {"__doc__": "Trains.", "trainable": True})
    with pytest.raises(AssertionError, match="trainable but does not implement save\\(\\), load\\(\\)"):
        check_component(_info("encoder", trainable))
    done = type("Done", (trainable,), {"__doc__": "Done.", "save": lambda self, p: None,
                                       "load": lambda self, p: self})
    check_component(_info("encoder", done))
    with pytest.raises(AssertionError, match="must subclass fusionkit.Encoder"):
        check_component(_info("encoder", type("Agg", (fusionkit.Aggregator,), {"__doc__": "A."})))


def test_check_component_enforces_aggregator_and_declarations():
    from fusionkit.testing import check_component

    linear = type("Lin", (fusionkit.Aggregator,), {"__doc__": "Lin.", "linear": True,
                                                   "reduce": lambda self, g, m: g.sum(1)})
    with pytest.raises(AssertionError, match="linear aggregators implement weights"):
        check_component(_info("aggregator", linear))

    class Nested(fusionkit.Task):
        """Nested."""

        component_params = {"agg": "aggregator"}

        def run(self, ctx):
            return {}

    with pytest.raises(AssertionError, match="component_params names 'agg'"):
        check_component(_info("task", Nested))

    class BadCheck(Nested):
        """Bad check."""

        component_params = {}

        def check_recipe(self, params, recipe):
            return []

    with pytest.raises(AssertionError, match="check_recipe must be a classmethod"):
        check_component(_info("task", BadCheck))


def test_registering_a_non_component_breaks_only_that_plugin():
    from fusionkit import plugins

    class NotAComponent:
        """Not one."""

    class Plugin:
        @staticmethod
        @fusionkit.hookimpl
        def register_encoders(register):
            register("not-a-component", NotAComponent)

    system = plugins.load(env={}, extra=[("bad-plugin", Plugin())])
    record = next(r for r in system.records if r.name == "bad-plugin")
    assert record.status == "broken" and "subclass of fusionkit.Encoder" in record.error
    assert not system.registry.has("encoder", "not-a-component") and system.registry.has("encoder", "identity")


# ----------------------------------------------------------------------------- bound once

def test_parameters_are_bound_once_at_validation(plugin_system, tmp_path, monkeypatch):
    from fusionkit import registry
    from fusionkit.context import RunContext
    from fusionkit.recipe import load_recipe
    from helpers import imported_recipe

    rec = load_recipe(imported_recipe(tmp_path), plugin_system)
    calls = []
    real = registry.bind_params
    monkeypatch.setattr(registry, "bind_params", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    ctx = RunContext(rec, plugin_system, tmp_path / "out", tmp_path / "cache", progress=False)
    sampler = ctx.sampler("patients")
    assert sampler.get_params()["repeats"] == 2 and ctx.build(rec.modalities["rna"].reader) is not None
    assert calls == []  # built from the validated spec
    plugin_system.create("sampler", "patient-level", {"k": 2})
    assert calls == ["patient-level"]
    sampler.repeats = 99  # the component's parameters are its own copy: the recipe stays resolved
    assert rec.sampling["patients"].params["repeats"] == 2


def test_signature_is_read_in_one_place():
    """Only the registry calls inspect.signature in fusionkit/."""
    readers = sorted(p.name for p in ROOTS["fusionkit"].rglob("*.py") if "signature(" in p.read_text())
    assert readers == ["registry.py"], readers


# ----------------------------------------------------------------------------- no domain words

DOMAIN_WORDS = {"tmb", "tmb_class", "cancer_type", "subtype", "BRCA", "rna", "mutation"}


def test_generic_core_holds_no_domain_names():
    offenders = []
    for name in ("engine.py", "pool.py", "context.py", "encode.py", "executors.py", "store.py", "registry.py",
                 "plugins.py", "components.py"):
        path = ROOTS["fusionkit"] / name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in DOMAIN_WORDS:
                offenders.append(f"{name}:{node.lineno}: {node.value!r}")
    assert not offenders, offenders


def test_data_summary_uses_the_recipes_primary_and_continuous_labels(plugin_system, tmp_path):
    from fusionkit import EmbeddingPool
    from fusionkit.engine import data_summary
    from fusionkit.recipe import load_recipe
    from helpers import imported_recipe

    pids = [f"P{i}" for i in range(6)]
    labels = {"cancer_type": dict(zip(pids, "AABBCC")), "subtype": dict(zip(pids, "xyxyxy")),
              "tmb": {p: 0.5 * i for i, p in enumerate(pids)}, "age": {p: 40 + i for i, p in enumerate(pids)}}
    pool = EmbeddingPool.from_arrays({"rna": (np.ones((6, 4)), pids)}, labels=labels)
    info = {"notes": [], "continuous": ["tmb"]}

    old = load_recipe(imported_recipe(tmp_path / "a"), plugin_system)
    assert old.primary_label == "cancer_type" and old.continuous_labels == ()
    summary = data_summary(pool, old, info)
    assert summary["modalities"]["rna"]["patients_by_cancer_type"] == {"A": 2, "B": 2, "C": 2}
    assert set(summary["labels"]) == {"cancer_type", "subtype", "age"}
    assert summary["continuous_labels"]["tmb"] == {"patients": 6, "min": 0.0, "median": 1.25, "max": 2.5}

    extra = "labels: {primary: subtype, continuous: [age]}"
    new = load_recipe(imported_recipe(tmp_path / "b", extra=extra), plugin_system)
    summary = data_summary(pool, new, {"notes": [], "continuous": ["tmb", *new.continuous_labels]})
    assert summary["primary_label"] == "subtype"
    assert summary["modalities"]["rna"]["patients_by_subtype"] == {"x": 3, "y": 3}
    assert set(summary["labels"]) == {"cancer_type", "subtype"} and set(summary["continuous_labels"]) == {"tmb", "age"}
    resolved = new.to_dict()["labels"]
    assert resolved == {"readers": [], "primary": "subtype", "continuous": ["age"]}


def test_labels_long_form_validates_and_set_converts_the_short_form(plugin_system, tmp_path):
    from fusionkit.errors import RecipeError
    from fusionkit.recipe import load_recipe
    from helpers import imported_recipe

    path = imported_recipe(tmp_path, extra="labels: []")
    rec = load_recipe(path, plugin_system, sets=["labels.primary=subtype"])
    assert rec.primary_label == "subtype" and rec.labels == []
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, plugin_system, sets=["labels.primry=subtype", "labels.continuous=3"])
    text = str(exc.value)
    assert "labels.primry" in text and "did you mean 'primary'" in text and "labels.continuous" in text


def test_continuous_labels_are_detected_from_floats_and_reader_declarations():
    from fusionkit.engine import _all_floats

    assert _all_floats({"a": 0.5, "b": np.float32(1.0), "c": None})
    assert not _all_floats({"a": 1, "b": 2}) and not _all_floats({"a": "x"}) and not _all_floats({})
    assert fusionkit.RawDataset(continuous_labels={"tmb"}).continuous_labels == {"tmb"}


def test_plugin_author_snippet_in_hookspecs_uses_the_public_api():
    from fusionkit import hookspecs

    doc = textwrap.dedent(hookspecs.__doc__ or "")
    assert "from fusionkit import Encoder, hookimpl" in doc and "fusionkit.components" not in doc


def test_a_missing_builtin_module_is_broken_not_skipped(monkeypatch):
    from fusionkit import plugins

    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", (*plugins.BUILTIN_PLUGINS, "fusionkit_plugins.no_such_room"))
    system = plugins.load(env={})
    record = next(r for r in system.records if r.name == "builtin.no_such_room")
    assert record.status == "broken" and "No module named" in record.error
    assert system.registry.has("aggregator", "sum")  # the other built-ins still load
