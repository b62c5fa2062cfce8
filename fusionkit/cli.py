"""The ``fusionkit`` command line. Only this module prints; libraries log.

Exit codes: 0 ok, 1 failure (a FusionkitError, printed with where and hint),
2 usage error.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import click

from .errors import FusionkitError

KIND_PLURALS = {"readers": "reader", "encoders": "encoder", "adapters": "adapter", "samplers": "sampler",
                "perturbations": "perturbation", "aggregators": "aggregator", "indexes": "index",
                "tasks": "task"}


def _load_system(plugins_dir: str | None, strict: bool):
    from . import plugins

    return plugins.load(plugins_dir=plugins_dir, strict=strict or None)


def _system_from(ctx: click.Context, plugins_dir: str | None = None, strict: bool = False):
    root = ctx.find_root()
    obj = root.obj or {}
    plugins_dir = plugins_dir or obj.get("plugins_dir")
    strict = strict or obj.get("strict", False)
    key = (plugins_dir, strict)
    cache = obj.setdefault("_systems", {})
    if key not in cache:
        cache[key] = _load_system(plugins_dir, strict)
    root.obj = obj
    return cache[key]


def _fail(err: FusionkitError) -> None:
    click.echo(f"error: {err}", err=True)
    sys.exit(1)


class FusionkitGroup(click.Group):
    """Adds commands from plugins (``register_commands``) lazily."""

    _plugins_added = False

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            system = _system_from(ctx)
        except FusionkitError:
            return
        system.add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> Any:
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._add_plugin_commands(ctx)
            cmd = super().get_command(ctx, name)
        return cmd


plugins_dir_option = click.option("--plugins-dir", type=click.Path(file_okay=False), default=None,
                                  help="Load one-file plugins (*.py) from this folder.")
strict_option = click.option("--strict", is_flag=True, default=False,
                             help="Treat any plugin problem as an error (also FUSIONKIT_STRICT=1).")


@click.group(cls=FusionkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fusionkit")
@plugins_dir_option
@strict_option
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, plugins_dir: str | None, strict: bool, verbose: int) -> None:
    """fusionkit: multimodal cancer embeddings from one YAML recipe.

    \b
    fusionkit run recipes/tumor_origin.yaml      run a study
    fusionkit validate RECIPE                    check a recipe without loading models
    fusionkit list encoders                      registered components
    fusionkit plugins                            installed plugins and their status
    """
    ctx.obj = {"plugins_dir": plugins_dir, "strict": strict}
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _recipe(ctx: click.Context, path: str, sets: tuple[str, ...], plugins_dir: str | None, strict: bool):
    from .recipe import load_recipe

    system = _system_from(ctx, plugins_dir, strict)
    return system, load_recipe(path, system, sets)


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set modalities.text.encoder.name=sbert-mpnet")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="Output folder.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default: recipe output.cache, $FUSIONKIT_CACHE, or OUT/cache).")
@click.option("--task", "tasks", multiple=True, help="Run only these tasks (by recipe name).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None, help="Override the executor.")
@click.option("--workers", type=int, default=None, help="Parallel workers for repeats.")
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@plugins_dir_option
@strict_option
@click.pass_context
def run(ctx: click.Context, recipe: str, sets: tuple[str, ...], out_dir: str | None, cache_dir: str | None,
        tasks: tuple[str, ...], executor: str | None, workers: int | None, address: str | None,
        progress: bool | None, plugins_dir: str | None, strict: bool) -> None:
    """Run RECIPE: read, encode (cached), sample, aggregate, run tasks, write the report."""
    from . import engine

    extra = list(sets)
    if executor:
        extra.append(f"executor.name={executor}")
    if workers is not None:
        extra.append(f"executor.params.workers={workers}")
    if address:
        extra.append(f"executor.params.address={address}")
    try:
        system, rec = _recipe(ctx, recipe, tuple(extra), plugins_dir, strict)
        record = engine.run(rec, system, out_dir=out_dir, cache_dir=cache_dir, progress=progress,
                            tasks=list(tasks) or None)
    except FusionkitError as err:
        _fail(err)
        return
    out = out_dir or rec.output["dir"]
    click.echo(f"finished {rec.name} in {record['wall_s']:.1f}s -> {out}")
    report = os.path.join(out, "report.html")
    if os.path.exists(report):
        click.echo(f"report: {report}")


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a recipe value.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved recipe (or the problems) as JSON.")
@plugins_dir_option
@strict_option
@click.pass_context
def validate(ctx: click.Context, recipe: str, sets: tuple[str, ...], as_json: bool, plugins_dir: str | None,
             strict: bool) -> None:
    """Check RECIPE without loading any model; print every problem at once."""
    from .errors import RecipeError

    try:
        system, rec = _recipe(ctx, recipe, sets, plugins_dir, strict)
    except RecipeError as err:
        if as_json:
            issues = err.issues or [err]
            click.echo(json.dumps({"valid": False, "errors": [
                {"where": i.where, "message": i.message, "hint": i.hint} for i in issues]}, indent=2))
            sys.exit(1)
        _fail(err)
        return
    except FusionkitError as err:
        if as_json:
            click.echo(json.dumps({"valid": False, "errors": [
                {"where": err.where, "message": err.message, "hint": err.hint}]}, indent=2))
            sys.exit(1)
        _fail(err)
        return
    from .doctor import recipe_weights  # the doctor's weight check: finds files, loads nothing

    weights = recipe_weights(rec, system)
    if as_json:
        click.echo(json.dumps({"valid": True, "recipe": rec.to_dict(), "weights": weights}, indent=2, default=str))
    else:
        click.echo(f"{recipe}: ok ({len(rec.modalities)} modalities, {len(rec.sampling)} sampling, "
                   f"{len(rec.tasks)} tasks)")
    for w in (w for w in weights if w["weights"]["status"] == "missing" and not as_json):
        click.echo(f"warning: {w['where']} ({w['encoder']}): weights not available offline: "
                   f"{w['weights']['detail']}\n  fix: {w['weights']['fix']}", err=True)


@cli.command(name="plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@plugins_dir_option
@strict_option
@click.pass_context
def plugins_cmd(ctx: click.Context, show_all: bool, as_json: bool, plugins_dir: str | None, strict: bool) -> None:
    """List installed plugins with their status (ok/broken/disabled/duplicate/unknown-hook)."""
    try:
        system = _system_from(ctx, plugins_dir, strict)
    except FusionkitError as err:
        _fail(err)
        return
    records = [r for r in system.records if show_all or not r.builtin]
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=2))
        return
    if not records:
        click.echo("no third-party plugins installed (use --all to list the built-ins)")
    for r in records:
        version = f" {r.version}" if r.version else ""
        dist = f" [{r.dist}{version}]" if r.dist else ""
        click.echo(f"{r.name}{dist}: {r.status}")
        if r.hooks:
            click.echo(f"    hooks: {', '.join(r.hooks)}")
        if r.components:
            click.echo(f"    components: {', '.join(r.components)}")
        if r.error:
            click.echo(f"    error: {r.error}")


@cli.command(name="list")
@click.argument("kind", type=click.Choice(sorted(KIND_PLURALS)))
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@plugins_dir_option
@strict_option
@click.pass_context
def list_cmd(ctx: click.Context, kind: str, as_json: bool, plugins_dir: str | None, strict: bool) -> None:
    """List registered components of KIND (without building any)."""
    try:
        system = _system_from(ctx, plugins_dir, strict)
    except FusionkitError as err:
        _fail(err)
        return
    infos = system.registry.all(KIND_PLURALS[kind])
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2, default=str))
        return
    width = max([len(i.name) for i in infos] + [4])
    for i in infos:
        d = i.as_dict()
        extra = ""
        if d.get("modality") or d.get("dim"):
            extra = f" [{d.get('modality') or '?'}, {d.get('dim') or '?'}-d]"
        provider = "" if i.builtin else f" ({d['provider']})"
        click.echo(f"{i.name:<{width}}  {i.summary}{extra}{provider}")


@cli.command()
@click.argument("kind", type=click.Choice(sorted(set(KIND_PLURALS) | set(KIND_PLURALS.values()))))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@plugins_dir_option
@click.pass_context
def describe(ctx: click.Context, kind: str, name: str, as_json: bool, plugins_dir: str | None) -> None:
    """Show one component: summary, model card, parameters and defaults."""
    import inspect

    kind = KIND_PLURALS.get(kind, kind)
    try:
        system = _system_from(ctx, plugins_dir)
        info = system.info(kind, name)
    except FusionkitError as err:
        _fail(err)
        return
    d = info.as_dict()
    d["doc"] = inspect.getdoc(info.factory) or ""
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    click.echo(f"{kind} {name}  (provider: {d['provider']} {d.get('version') or ''})")
    click.echo("")
    click.echo(d["doc"])
    click.echo("")
    for key in ("modality", "dim", "licence", "gated", "weights_source", "params", "tags"):
        if d.get(key) is not None:
            click.echo(f"{key}: {d[key]}")
    if d.get("parameters"):
        click.echo("parameters:")
        for k, v in d["parameters"].items():
            click.echo(f"  {k}: {v!r}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="JSON rows instead of Markdown.")
def results(run_dir: str, as_json: bool) -> None:
    """Print a finished run's data availability and its numbers next to the paper's (Markdown)."""
    from pathlib import Path

    from .report import paper_rows

    run = Path(run_dir)
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        summary = json.loads((run / "data_summary.json").read_text())
    except FileNotFoundError as exc:
        _fail(FusionkitError(f"{exc.filename} not found", where=run_dir,
                             hint="give the output folder of a finished `fusionkit run` with tasks"))
        return
    rows = paper_rows(metrics)
    if as_json:
        click.echo(json.dumps({"availability": summary.get("modalities", {}), "paper_comparison": rows},
                              indent=2, default=str))
        return
    mods = summary.get("modalities", {})
    by_key = _patients_by_key(summary)
    classes = sorted({c for e in mods.values() for c in (e.get(by_key) or {})})
    click.echo("| modality | items | patients | mean norm | norm of mean | " + " | ".join(classes) + " |")
    click.echo("|---" * (5 + len(classes)) + "|")
    for m, e in mods.items():
        by = e.get(by_key) or {}
        click.echo(f"| {m} | {e.get('items')} | {e.get('patients')} | {e.get('mean_norm', 0):.3g} | "
                   f"{e.get('norm_of_mean', 0):.3g} | " + " | ".join(str(by.get(c, 0)) for c in classes) + " |")
    click.echo("")
    click.echo("| task | experiment | metric | modality | k | ours (mean) | 95% CI | paper |")
    click.echo("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ours = r.get("ours")
        ours_s = f"{ours:.3f}" if isinstance(ours, (int, float)) else ("" if ours is None else str(ours))
        click.echo(f"| {r.get('task')} | {r.get('experiment', '')} | {r.get('metric', '')} | "
                   f"{r.get('modality', '')} | {r.get('k', '')} | {ours_s} | {r.get('ours_ci', '')} | "
                   f"{r.get('paper', '')} |")



@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "fmt", type=click.Choice(["h5mu", "h5ad", "parquet"]), default="h5mu", show_default=True,
              help="MuData (all modalities), AnnData (one file each) or parquet tables.")
@click.option("--out", "out", type=click.Path(), default=None,
              help="Output .h5mu file (h5mu) or folder (h5ad, parquet); default RUN_DIR/export/.")
def export(run_dir: str, fmt: str, out: str | None) -> None:
    """Export a run's embedding stores and aggregates for scverse (h5mu/h5ad) or as parquet."""
    from .export import export_run

    try:
        paths = export_run(run_dir, to=fmt, out=out)
    except FusionkitError as err:
        _fail(err)
        return
    for path in paths:
        click.echo(str(path))


def _patients_by_key(summary: dict[str, Any]) -> str:
    """The data summary's per-class availability key: that of the recipe's primary label
    (``labels.primary``), or the first one found in summaries written before it was recorded."""
    if summary.get("primary_label"):
        return f"patients_by_{summary['primary_label']}"
    keys = [k for e in summary.get("modalities", {}).values() for k in e if k.startswith("patients_by_")]
    return keys[0] if keys else "patients_by_"



@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--quick", is_flag=True, help="Skip the child process that imports torch, torchvision and timm.")
@plugins_dir_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, quick: bool, plugins_dir: str | None) -> None:
    """What this machine can run: extras, torch/CUDA, timm, encoder weights offline, slide backends, Ray."""
    from .doctor import diagnose, render

    try:
        report = diagnose(_system_from(ctx, plugins_dir), quick=quick)
    except FusionkitError as err:
        _fail(err)
        return
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render(report))


def main() -> None:
    try:
        cli(prog_name="fusionkit")
    except FusionkitError as err:  # pragma: no cover - commands handle their own
        _fail(err)


if __name__ == "__main__":  # pragma: no cover
    main()
