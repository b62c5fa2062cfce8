"""YAML recipes: load, override (``--set``), validate before anything heavy
loads, and resolve (all defaults filled) for the run record.

A recipe (schema 1)::

    schema: 1
    name: tumor_origin
    seed: 7
    width: 768                       # the common embedding width
    vars: {root: ../data}            # ${root} is replaced in every string
    data:
      reader: {name: synthetic-tcga, params: {n_patients: 300}}
    modalities:
      rna:
        reader: ...                  # optional, defaults to data.reader
        input: rna                   # modality of the reader's output (default: the key)
        encoder: {name: rna-vae, params: {epochs: 20}}
        adapter: {name: zero-pad}    # optional width adapter
    labels: [{name: tcga-labels, params: {root: ${root}}}]   # label readers, or the long form:
    # labels: {readers: [...], primary: cancer_type, continuous: [tmb]}
    #   primary: the label the data summary counts patients by (default cancer_type)
    #   continuous: labels that are measurements (summarised by range, not value counts)
    sampling:   {<name>: {name: modality-level, params: {...}}}
    perturbations: {<name>: {name: gaussian-replace, params: {...}}}
    aggregator: {name: sum}
    index: {name: faiss-flat}
    tasks:      {<name>: {name: recognizer, params: {...}}}
    output: {dir: runs/tumor_origin, cache: null, save_aggregates: true}
    executor: {name: local, params: {workers: 1}}

A component may be written as a bare name (``encoder: sbert``). Input paths
resolve relative to the recipe file; ``output.dir`` relative to the current
directory.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import FusionkitError, RecipeError
from .registry import ComponentInfo, suggest

if TYPE_CHECKING:  # type checkers only
    from .plugins import PluginSystem

SCHEMA_VERSION = 1
TOP_KEYS = ("schema", "name", "description", "seed", "width", "vars", "data", "modalities", "labels",
            "sampling", "perturbations", "aggregator", "index", "tasks", "output", "executor")
MODALITY_KEYS = ("reader", "input", "encoder", "adapter", "enabled")
SPEC_KEYS = ("name", "params")
OUTPUT_KEYS = ("dir", "cache", "save_aggregates")
LABEL_KEYS = ("readers", "primary", "continuous")
#: the label the data summary breaks availability down by, unless ``labels.primary`` names another
DEFAULT_PRIMARY_LABEL = "cancer_type"
EXECUTORS = ("local", "ray")
EXECUTOR_PARAMS = {"local": ("workers",), "ray": ("workers", "address", "num_cpus", "num_gpus")}
_PATH_PARAM = re.compile(r"(^|_)(path|paths|root|dir|file|files|folder|ids)$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ----------------------------------------------------------------------------- loading

def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A recipe file as plain data (UTF-8 text, no alias bombs, no duplicate keys: see yamlsafe)."""
    from .yamlsafe import load_yaml_file

    path = Path(path)
    raw = load_yaml_file(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a mapping at the top level, got {type(raw).__name__}", where=str(path))
    return raw


def parse_set(expr: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], parsed YAML scalar)."""
    if "=" not in expr:
        raise RecipeError(f"--set {expr!r} must look like key.path=value",
                          hint="e.g. --set modalities.text.encoder.name=sbert")
    key, value = expr.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"--set {expr!r} has an empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return parts, parsed


def apply_overrides(raw: dict[str, Any], sets: list[str] | tuple[str, ...]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for expr in sets or ():
        parts, value = parse_set(expr)
        node = raw
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part) if isinstance(node, dict) else None
            if nxt is None:
                nxt = {}
                node[part] = nxt
            elif isinstance(nxt, str) and _is_spec_path(parts, i):
                nxt = {"name": nxt}
                node[part] = nxt
            elif isinstance(nxt, list) and i == 0 and part == "labels":  # short form -> long form
                nxt = {"readers": nxt}
                node[part] = nxt
            elif not isinstance(nxt, dict):
                raise RecipeError(f"--set {expr!r}: {'.'.join(parts[:i + 1])} is not a mapping")
            node = nxt
        if parts[-1] == "name" and len(parts) >= 2 and _is_spec_path(parts, len(parts) - 2) \
                and node.get("name") != value:
            node.pop("params", None)  # another component: the old one's parameters do not apply
        node[parts[-1]] = value
    return raw


def _is_spec_path(parts: list[str], i: int) -> bool:
    return parts[i] in ("encoder", "adapter", "reader", "aggregator", "index") or (
        i >= 1 and parts[i - 1] in ("sampling", "perturbations", "tasks"))


def interpolate(obj: Any, variables: dict[str, Any], where: str = "") -> Any:
    if isinstance(obj, str):
        whole = _VAR.fullmatch(obj)
        if whole and whole.group(1) in variables:  # "${n}" alone keeps the variable's type
            return copy.deepcopy(variables[whole.group(1)])

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in variables:
                raise RecipeError(f"unknown variable ${{{name}}}", where=where or None,
                                  hint=f"define it under vars:, or --set vars.{name}=...")
            return str(variables[name])
        return _VAR.sub(repl, obj)
    if isinstance(obj, list):
        return [interpolate(v, variables, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: interpolate(v, variables, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- recipe objects

@dataclass
class Spec:
    """A resolved component: kind, name, all parameters (defaults filled)."""

    kind: str
    name: str
    params: dict[str, Any]
    where: str
    info: ComponentInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": _plain(self.params)}

    def key(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "params": _plain(self.params),
                "version": self.info.version if self.info else None}


@dataclass
class ModalitySpec:
    name: str
    reader: Spec
    input: str
    encoder: Spec
    adapter: Spec | None


@dataclass
class Recipe:
    #: travels to remote workers once per batch (see ray_executor)
    __fusionkit_shared__ = True

    path: Path | None
    name: str
    seed: int
    width: int
    vars: dict[str, Any]
    modalities: dict[str, ModalitySpec]
    labels: list[Spec]
    sampling: dict[str, Spec]
    perturbations: dict[str, Spec]
    aggregator: Spec
    index: Spec | None
    tasks: dict[str, Spec]
    output: dict[str, Any]
    executor: dict[str, Any]
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    #: the label the data summary counts patients by (``labels.primary``)
    primary_label: str = DEFAULT_PRIMARY_LABEL
    #: labels that are measurements, not classes (``labels.continuous``)
    continuous_labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe (every default filled), as written into each run."""
        return {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "width": self.width,
            "vars": _plain(self.vars),
            "modalities": {
                m.name: {"reader": m.reader.to_dict(), "input": m.input, "encoder": m.encoder.to_dict(),
                         **({"adapter": m.adapter.to_dict()} if m.adapter else {})}
                for m in self.modalities.values()},
            "labels": {"readers": [s.to_dict() for s in self.labels], "primary": self.primary_label,
                       "continuous": list(self.continuous_labels)},
            "sampling": {k: s.to_dict() for k, s in self.sampling.items()},
            "perturbations": {k: s.to_dict() for k, s in self.perturbations.items()},
            "aggregator": self.aggregator.to_dict(),
            "index": self.index.to_dict() if self.index else None,
            "tasks": {k: s.to_dict() for k, s in self.tasks.items()},
            "output": _plain(self.output),
            "executor": _plain(self.executor),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ----------------------------------------------------------------------------- validation

class _Collector:
    def __init__(self, source: str):
        self.issues: list[FusionkitError] = []
        self.source = source

    def add(self, message: str, where: str, hint: str | None = None) -> None:
        self.issues.append(RecipeError(message, where=f"{self.source}: {where}" if self.source else where, hint=hint))

    def add_error(self, err: FusionkitError, where: str) -> None:
        if isinstance(err, RecipeError) and err.issues:
            for sub in err.issues:
                self.add_error(sub, where)
            return
        loc = err.where or where
        self.issues.append(RecipeError(err.message, where=f"{self.source}: {loc}" if self.source else loc,
                                       hint=err.hint))


def _unknown_keys(c: _Collector, mapping: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in mapping:
        if key not in allowed:
            hint = suggest(str(key), list(allowed)) or f"allowed keys: {', '.join(allowed)}"
            c.add(f"unknown key {key!r}", f"{where}.{key}" if where else str(key), hint)


def _resolve_paths(params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Resolve path-like parameters (by name: *path, *paths, *root, *dir, *file(s), ids),
    also inside nested mappings, relative to the recipe folder."""
    out = {}
    for key, value in params.items():
        if _PATH_PARAM.search(str(key)):
            out[key] = _resolve_path_value(value, base)
        elif isinstance(value, dict):
            out[key] = _resolve_paths(value, base)
        else:
            out[key] = value
    return out


def _resolve_path_value(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value and "://" not in value and not value.startswith(("hf-hub:", "~")):
        p = Path(value)
        return str(p if p.is_absolute() else (base / p).resolve())
    if isinstance(value, str) and value.startswith("~"):
        return str(Path(value).expanduser())
    if isinstance(value, list):
        return [_resolve_path_value(v, base) for v in value]
    return value


class _Specs:
    """Resolves component entries of one recipe: name -> registry, params bound once."""

    def __init__(self, c: _Collector, system: "PluginSystem", base: Path):
        self.c, self.system, self.base = c, system, base

    def spec(self, kind: str, raw: Any, where: str) -> Spec | None:
        c = self.c
        if raw is None:
            c.add(f"missing {kind}", where, f"give a {kind} name, e.g. `{where.rsplit('.', 1)[-1]}: NAME`")
            return None
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict):
            c.add(f"a {kind} must be a name or a mapping with name/params, got {type(raw).__name__}", where)
            return None
        _unknown_keys(c, raw, SPEC_KEYS, where)
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            c.add(f"{kind} needs a 'name'", where, f"see `fusionkit list {kind}s`")
            return None
        params = raw.get("params") or {}
        if not isinstance(params, dict):
            c.add(f"params must be a mapping, got {type(params).__name__}", f"{where}.params")
            return None
        try:
            info = self.system.info(kind, name, where=f"{where}.name")
        except FusionkitError as err:
            c.add_error(err, f"{where}.name")
            return None
        try:
            bound = info.bind(params, where=where)  # the one binding; components are built from it
        except FusionkitError as err:
            c.add_error(err, where)
            return None
        return Spec(kind=kind, name=name, params=_resolve_paths(bound, self.base), where=where, info=info)

    def named(self, kind: str, raw: Any, where: str) -> dict[str, Spec]:
        out: dict[str, Spec] = {}
        if raw is None:
            return out
        if not isinstance(raw, dict):
            self.c.add(f"{where} must map names to {kind}s", where, f"e.g. {where}: {{my_{kind}: {{name: NAME}}}}")
            return out
        for key, value in raw.items():
            spec = self.spec(kind, value, f"{where}.{key}")
            if spec is not None:
                out[str(key)] = spec
        return out


def validate(raw: dict[str, Any], system: "PluginSystem", *, path: str | os.PathLike[str] | None = None,
             sets: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate a raw recipe against the registry; every problem is reported at once.

    Nothing heavy is imported: only component classes and their signatures.
    Section by section; then nested components and components' own
    cross-checks (``check_recipe``) run on the assembled recipe.
    """
    path = Path(path).resolve() if path else None
    c = _Collector(str(path) if path else "")
    raw = apply_overrides(raw, sets)
    specs = _Specs(c, system, path.parent if path else Path.cwd())
    body, variables = _header(c, raw)
    seed, width = _seed_and_width(c, body)
    modalities = _modalities(specs, body)
    labels, primary, continuous = _labels(specs, body.get("labels"))
    sampling = specs.named("sampler", body.get("sampling"), "sampling")
    perturbations = specs.named("perturbation", body.get("perturbations"), "perturbations")
    aggregator = specs.spec("aggregator", body.get("aggregator", "sum"), "aggregator")
    index = specs.spec("index", body["index"], "index") if body.get("index") is not None else None
    tasks = specs.named("task", body.get("tasks"), "tasks")
    name = str(body.get("name") or (path.stem if path else "recipe"))
    recipe = Recipe(
        path=path, name=name, seed=seed, width=width, vars=dict(variables),
        modalities=modalities, labels=labels, sampling=sampling, perturbations=perturbations,
        aggregator=aggregator or Spec("aggregator", "sum", {}, "aggregator"), index=index, tasks=tasks,
        output=_output(c, body, name), executor=_executor(c, body), description=str(body.get("description") or ""),
        raw=raw, primary_label=primary, continuous_labels=continuous,
    )
    _nested_components(specs, recipe)
    _cross_checks(c, recipe)
    from .preflight import semantic_issues  # names, widths, inputs, memory, workers

    for where, message, hint in semantic_issues(recipe, system, structural_ok=not c.issues):
        c.add(message, where, hint)
    if c.issues:
        n = len(c.issues)
        raise RecipeError(f"recipe is invalid ({n} problem{'s' if n > 1 else ''})", issues=c.issues)
    return recipe


def _header(c: _Collector, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Top-level keys, schema version and ``${var}`` interpolation: (body, vars)."""
    _unknown_keys(c, raw, TOP_KEYS, "")
    schema = raw.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        c.add(f"unsupported schema {schema!r}", "schema", f"this fusionkit reads schema {SCHEMA_VERSION}")
    variables = raw.get("vars") or {}
    if not isinstance(variables, dict):
        c.add("vars must be a mapping", "vars")
        variables = {}
    try:
        variables = _resolve_vars(variables)
        body = interpolate({k: v for k, v in raw.items() if k != "vars"}, variables)
    except FusionkitError as err:
        c.add_error(err, "vars")
        body = raw
    return body, variables


def _var_refs(obj: Any) -> set[str]:
    if isinstance(obj, str):
        return set(_VAR.findall(obj))
    if isinstance(obj, (list, tuple)):
        return set().union(*map(_var_refs, obj)) if obj else set()
    if isinstance(obj, dict):
        return set().union(*map(_var_refs, obj.values())) if obj else set()
    return set()


def _resolve_vars(variables: dict[str, Any]) -> dict[str, Any]:
    """``vars`` whose values refer to other vars (``${a}/b``), resolved; a cycle is an error."""
    resolved: dict[str, Any] = {}

    def get(name: str, stack: tuple[str, ...]) -> Any:
        if name in resolved:
            return resolved[name]
        if name in stack:
            raise RecipeError(f"variables refer to each other in a cycle: {' -> '.join((*stack, name))}",
                              where="vars", hint="give one of them a literal value")
        value = variables[name]
        deps = {d: get(d, (*stack, name)) for d in _var_refs(value) if d in variables}
        resolved[name] = interpolate(value, deps, f"vars.{name}")
        return resolved[name]

    for name in variables:
        get(name, ())
    return resolved


def _seed_and_width(c: _Collector, body: dict[str, Any]) -> tuple[int, int]:
    seed = body.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        c.add(f"seed must be an integer, got {seed!r}", "seed")
        seed = 0
    width = body.get("width", 768)
    if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
        c.add(f"width must be a positive integer, got {width!r}", "width")
        width = 768
    return int(seed), int(width)


def _modalities(specs: _Specs, body: dict[str, Any]) -> dict[str, ModalitySpec]:
    c = specs.c
    data = body.get("data") or {}
    if not isinstance(data, dict):
        c.add("data must be a mapping", "data")
        data = {}
    _unknown_keys(c, data, ("reader",), "data")
    raw_mods = body.get("modalities") or {}
    if not isinstance(raw_mods, dict) or not raw_mods:
        c.add("a recipe needs at least one modality", "modalities", "e.g. modalities: {text: {encoder: sbert}}")
        raw_mods = {}
    out: dict[str, ModalitySpec] = {}
    for mname, mraw in raw_mods.items():
        spec = _modality(specs, str(mname), {} if mraw is None else mraw, data.get("reader"))
        if spec is not None:
            out[str(mname)] = spec
    return out


def _modality(specs: _Specs, mname: str, mraw: Any, default_reader: Any) -> ModalitySpec | None:
    c, where = specs.c, f"modalities.{mname}"
    if not isinstance(mraw, dict):
        c.add("a modality must be a mapping with reader/encoder/adapter", where)
        return None
    _unknown_keys(c, mraw, MODALITY_KEYS, where)
    if mraw.get("enabled", True) is False:
        return None
    reader_raw = mraw.get("reader", default_reader)
    reader = None
    if reader_raw is None:
        c.add("no reader for this modality and no data.reader default", f"{where}.reader",
              "add `reader: NAME` here or `data: {reader: NAME}`")
    else:
        reader = specs.spec("reader", reader_raw, f"{where}.reader" if "reader" in mraw else "data.reader")
    encoder = specs.spec("encoder", mraw.get("encoder"), f"{where}.encoder")
    adapter = specs.spec("adapter", mraw["adapter"], f"{where}.adapter") if mraw.get("adapter") is not None else None
    inp = str(mraw.get("input", mname))
    if reader is None or encoder is None:
        return None
    provides = reader.info.factory.provides if reader.info else ()
    if provides and inp not in provides:
        c.add(f"reader {reader.name!r} does not provide modality {inp!r}", f"{where}.input",
              f"it provides: {', '.join(provides)}")
    return ModalitySpec(name=mname, reader=reader, input=inp, encoder=encoder, adapter=adapter)


def _labels(specs: _Specs, raw: Any) -> tuple[list[Spec], str, tuple[str, ...]]:
    """``labels``: a list of label readers, or ``{readers, primary, continuous}``."""
    c = specs.c
    primary, continuous, where, readers = DEFAULT_PRIMARY_LABEL, (), "labels", raw
    if isinstance(raw, dict):
        _unknown_keys(c, raw, LABEL_KEYS, "labels")
        readers, where = raw.get("readers"), "labels.readers"
        primary = raw.get("primary", DEFAULT_PRIMARY_LABEL)
        if not isinstance(primary, str) or not primary:
            c.add(f"labels.primary must be a label name, got {primary!r}", "labels.primary",
                  f"e.g. primary: {DEFAULT_PRIMARY_LABEL}")
            primary = DEFAULT_PRIMARY_LABEL
        names = raw.get("continuous") or []
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            c.add("labels.continuous must be a list of label names", "labels.continuous", "e.g. continuous: [tmb]")
            names = []
        continuous = tuple(names)
    readers = readers or []
    if not isinstance(readers, list):
        c.add("labels must be a list of readers", where,
              "e.g. labels: [{name: tcga-labels}] or labels: {readers: [...], primary: cancer_type}")
        readers = []
    out = [s for i, r in enumerate(readers) if (s := specs.spec("reader", r, f"{where}[{i}]"))]
    return out, primary, continuous


def _output(c: _Collector, body: dict[str, Any], name: str) -> dict[str, Any]:
    output = body.get("output") or {}
    if not isinstance(output, dict):
        c.add("output must be a mapping", "output")
        output = {}
    _unknown_keys(c, output, OUTPUT_KEYS, "output")
    return {"dir": output.get("dir") or f"runs/{name}", "cache": output.get("cache"),
            "save_aggregates": bool(output.get("save_aggregates", True))}


def _executor(c: _Collector, body: dict[str, Any]) -> dict[str, Any]:
    executor = body.get("executor") or {"name": "local"}
    if isinstance(executor, str):
        executor = {"name": executor}
    if not isinstance(executor, dict):
        c.add("executor must be a name or mapping", "executor")
        executor = {"name": "local"}
    _unknown_keys(c, executor, SPEC_KEYS, "executor")
    ex_name = executor.get("name", "local")
    if ex_name not in EXECUTORS:
        c.add(f"unknown executor {ex_name!r}", "executor.name", suggest(str(ex_name), list(EXECUTORS)))
    ex_params = executor.get("params") or {}
    if not isinstance(ex_params, dict):
        ex_params = {}
    _unknown_keys(c, ex_params, EXECUTOR_PARAMS.get(ex_name, ()), "executor.params")
    return {"name": ex_name, "params": {"workers": 1, **ex_params}}


def _components_with_params(recipe: Recipe) -> list[Spec]:
    return [*recipe.sampling.values(), *recipe.perturbations.values(), *recipe.tasks.values()]


def _nested_components(specs: _Specs, recipe: Recipe) -> None:
    """Parameters that name another component (``component_params = {"aggregator":
    "aggregator"}``) are validated like any recipe component and stored resolved
    (``{name, params}`` with defaults)."""
    for spec in _components_with_params(recipe):
        nested = spec.info.factory.component_params if spec.info else {}
        for param, kind in nested.items():
            value = spec.params.get(param)
            if value is None:
                continue
            sub = specs.spec(kind, value, f"{spec.where}.params.{param}")
            if sub is not None:
                spec.params[param] = sub.to_dict()


def _cross_checks(c: _Collector, recipe: Recipe) -> None:
    """Components check the recipe around them (e.g. a task naming a sampling entry)."""
    for spec in _components_with_params(recipe):
        if spec.info is None:
            continue
        try:
            for where, message, hint in spec.info.factory.check_recipe(spec.params, recipe) or ():
                c.add(message, f"{spec.where}.{where}" if where else spec.where, hint)
        except FusionkitError as err:
            c.add_error(err, spec.where)


def load_recipe(path: str | os.PathLike[str], system: "PluginSystem", sets: list[str] | tuple[str, ...] = ()) -> Recipe:
    return validate(load_yaml(path), system, path=path, sets=sets)
