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
    ctx = click.get_current_context(silent=True)
    obj = (ctx.find_root().obj if ctx is not None else None) or {}
    if obj.get("verbose", 0) >= 2:  # -vv: the traceback too (of the cause, when there is one)
        import traceback

        click.echo("".join(traceback.format_exception(err)).rstrip(), err=True)
    click.echo(f"error: {err}", err=True)
    sys.exit(1)


def _as_user_error(exc: BaseException) -> FusionkitError | None:
    """The one message for an exception that escaped a command (None: a bug, re-raised with -vv)."""
    if isinstance(exc, FusionkitError):
        return exc
    if isinstance(exc, MemoryError):
        return FusionkitError("out of memory", hint="lower n, k or the workers, or run on a machine with more memory")
    if isinstance(exc, OSError):
        where = exc.filename if isinstance(exc.filename, str) else None
        return FusionkitError(f"{exc.strerror or exc}", where=where,
                              hint="check the path, its permissions and the free disk space")
    if isinstance(exc, EOFError):
        return FusionkitError(f"unexpected end of file ({exc})", hint="an input file is truncated; replace it")
    return None


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

    def invoke(self, ctx: click.Context) -> Any:
        """Every error that escapes a command is one message and exit 1 (2 for usage, 130 for Ctrl-C);
        a traceback only with -vv."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            err = _as_user_error(exc)
            if err is None:
                if (ctx.obj or {}).get("verbose", 0) >= 2:
                    raise
                err = FusionkitError(f"internal error: {type(exc).__name__}: {exc}",
                                     hint="a bug in fusionkit or a plugin: run with -vv for the traceback and report it")
            if err is not exc:
                err.__cause__ = exc
            _fail(err)

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
    ctx.obj = {"plugins_dir": plugins_dir, "strict": strict, "verbose": verbose}
    _setup_logging(logging.WARNING - 10 * min(verbose, 2))


def _setup_logging(level: int) -> None:
    """fusionkit's records of ``level`` and up on stderr; other libraries' only when errors (a run's
    log file, run.log, gets everything: see :class:`fusionkit.progress.RunLog`)."""
    from .progress import ConsoleFilter

    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "_fusionkit", False)]:
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler._fusionkit = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ConsoleFilter(level))
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO))


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
@click.option("--progress/--no-progress", default=None,
              help="A live progress line (default: on a terminal); otherwise a line per stage.")
@click.option("--refresh", "refresh", multiple=True, metavar="STAGE",
              help="Recompute instead of reusing the cache: encode, tasks, a task's name, or all (repeatable).")
@plugins_dir_option
@strict_option
@click.pass_context
def run(ctx: click.Context, recipe: str, sets: tuple[str, ...], out_dir: str | None, cache_dir: str | None,
        tasks: tuple[str, ...], executor: str | None, workers: int | None, address: str | None,
        progress: bool | None, refresh: tuple[str, ...], plugins_dir: str | None, strict: bool) -> None:
    """Run RECIPE: read, encode (cached), sample, aggregate, run tasks, write the report.

    The console shows one progress display; library warnings go to OUT/run.log and are
    counted once at the end, followed by the paper's claims and their verdicts.
    """
    from .progress import quiet_libraries
    from .runlock import RunLock

    quiet_libraries()  # before any library is imported: no weight-loading bars
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
        _check_refresh(refresh, rec)
        out = out_dir or rec.output["dir"]
        # the run folder's lock first: a second run into it touches nothing (not even run.log)
        with RunLock(out, recipe=recipe), _RunConsole(out, progress) as console:
            record = engine.run(rec, system, out_dir=out_dir, cache_dir=cache_dir, progress=progress,
                                tasks=list(tasks) or None, refresh=list(refresh))
    except FusionkitError as err:
        _fail(err)
        return
    click.echo(f"finished {rec.name} in {record['wall_s']:.1f}s -> {out}")
    console.print_summary(out)


def _check_refresh(refresh: tuple[str, ...], rec: Any) -> None:
    from .registry import suggest

    known = ["encode", "tasks", "all", *rec.tasks]
    for stage in refresh:
        if stage not in known:
            hint = suggest(stage, known) or f"stages: {', '.join(known)}"
            raise click.UsageError(f"--refresh {stage!r}: not a stage of this recipe ({hint})")


class _RunConsole:
    """The run's progress display and run.log; after the run, the warnings and claims summaries."""

    def __init__(self, out: str, progress: bool | None):
        from .progress import Console, RunLog

        mode = "tty" if progress else ("plain" if progress is False else "auto")
        self.console = Console(sys.stderr, mode)
        os.makedirs(out, exist_ok=True)
        self.log = RunLog(os.path.join(out, "run.log"))

    def __enter__(self) -> "_RunConsole":
        from .progress import set_current

        set_current(self.console)
        self.log.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        from .progress import set_current

        self.log.__exit__(*exc)
        self.console.close()
        set_current(None)

    def print_summary(self, out: str) -> None:
        lines = self.log.summary()
        if lines:
            click.echo(f"library warnings (see {self.log.path}):")
            for line in lines:
                click.echo(f"  {line}")
        try:
            from .report import claims_summary, load_run

            claims = claims_summary(load_run(out))
        except FusionkitError:
            claims = []
        if claims:
            click.echo("the paper's claims on this run:")
            for line in claims:
                click.echo(line)
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
@click.argument("kind", type=click.Choice(sorted(set(KIND_PLURALS) | set(KIND_PLURALS.values()))))
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
    infos = system.registry.all(KIND_PLURALS.get(kind, kind))
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2, default=str))
        return
    width = max([len(i.name) for i in infos] + [4])
    for i in infos:
        d = i.as_dict()
        extra = ""
        if d.get("modality") or d.get("dim"):
            extra = f" [{d.get('modality') or '?'}, {d.get('dim') or '?'}-d]"
        elif d.get("modalities"):
            extra = f" [{', '.join(d['modalities'])}]"
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
    if kind == "reader":  # what a recipe can take from it
        click.echo(f"modalities: {', '.join(d.get('modalities') or []) or '(any: set by its parameters)'}")
        click.echo(f"labels: {', '.join(d.get('labels') or []) or '(none declared)'}")
    if d.get("parameters"):
        click.echo("parameters:")
        for k, v in d["parameters"].items():
            click.echo(f"  {k}: {v!r}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="JSON instead of Markdown.")
def results(run_dir: str, as_json: bool) -> None:
    """Print a finished run as Markdown: the study, the paper's claims with verdicts, embedding
    health, availability per class and every comparison with the paper (the report's numbers)."""
    from .report import load_run, results_json, results_markdown
    from .runstate import require_complete

    try:
        require_complete(run_dir, what="results")  # never the numbers of a failed or unfinished run
        view = load_run(run_dir)
    except FusionkitError as err:
        _fail(err)
        return
    if as_json:
        click.echo(json.dumps(results_json(view), indent=2, default=str))
        return
    click.echo(results_markdown(view), nl=False)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--label", "labels", multiple=True, help="Label to probe (repeatable; default cancer_type).")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.option("--raw-pca", is_flag=True, help="Also probe PCA-256 of each matrix modality's raw input (reads it again).")
def probe(run_dir: str, labels: tuple[str, ...], as_json: bool, raw_pca: bool) -> None:
    """Embedding health of a finished run: spread, effective rank and a per-patient linear probe
    of each label per modality (protocol in the output), optionally against a PCA of the raw input."""
    from .engine import read_inputs
    from .health import health_lines, probe_run
    from .runstate import require_complete

    try:
        require_complete(run_dir, what="outputs")
        res = probe_run(run_dir, labels=list(labels) or None, raw_pca=raw_pca, read_inputs=read_inputs)
    except FusionkitError as err:
        _fail(err)
        return
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    click.echo(f"protocol: {res['protocol']}")
    click.echo("\n".join(health_lines(res["health"])))
    for mod, per in (res.get("raw_pca") or {}).items():
        for label, p in per.items():
            click.echo(f"{mod} raw input PCA-{p.get('pca_dim')}: probe {label} macro-F1 {p.get('macro_f1', 0):.3f}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--to", "fmt", type=click.Choice(["h5mu", "h5ad", "parquet"]), default="h5mu", show_default=True,
              help="MuData (all modalities), AnnData (one file each) or parquet tables.")
@click.option("--out", "out", type=click.Path(), default=None,
              help="Output .h5mu file (h5mu) or folder (h5ad, parquet); default RUN_DIR/export/.")
def export(run_dir: str, fmt: str, out: str | None) -> None:
    """Export a run's embedding stores and aggregates for scverse (h5mu/h5ad) or as parquet."""
    from .export import export_run
    from .runstate import require_complete

    try:
        require_complete(run_dir, what="outputs")
        paths = export_run(run_dir, to=fmt, out=out)
    except FusionkitError as err:
        _fail(err)
        return
    for path in paths:
        click.echo(str(path))



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


from .cache_cli import cache as _cache_group  # noqa: E402 - light (click only): `fusionkit cache ls|prune`

cli.add_command(_cache_group)


def main() -> None:
    try:
        cli(prog_name="fusionkit")
    except FusionkitError as err:  # pragma: no cover - commands handle their own
        _fail(err)


if __name__ == "__main__":  # pragma: no cover
    main()
