"""``fusionkit cache ls|prune``: what a cache folder holds, and cleaning it.

A cache folder (``--cache``, ``output.cache``, ``$FUSIONKIT_CACHE`` or
``<run>/cache``) holds:

* ``stores/<modality>-<encoder>-<key>/`` — committed embedding stores, with
  their provenance (encoder, parameters, version, code and weights
  fingerprints, input fingerprint, creation time) in ``meta.json``;
* ``work/<modality>-<key>/`` — encode shards and a fitted encoder's state:
  needed to resume an interrupted encoding, redundant once its store exists;
* ``units/<recipe>/<group>/`` — finished experiment repeats;
* ``fingerprints.json`` — remembered input hashes.

``prune`` removes by default what can never be used again: work folders
whose store is committed, stores that were never committed, and stores made
by code or local weights that have changed since (their key can no longer be
produced). ``--older-than DAYS`` adds anything unused for that long and
``--all`` empties the folder. ``--dry-run`` shows what would go.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from .errors import FusionkitError

__all__ = ["CacheEntry", "scan", "resolve_cache_dir", "stale_reasons", "cache"]


@dataclass
class CacheEntry:
    """One thing in a cache folder."""

    kind: str  # store | work | units | fingerprints
    path: str  # relative to the cache folder
    size_bytes: int
    modified: str
    provenance: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | done (redundant work) | incomplete | stale: ...

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _size_and_mtime(path: Path) -> tuple[int, float]:
    if path.is_file():
        st = path.stat()
        return st.st_size, st.st_mtime
    size, newest = 0, path.stat().st_mtime
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


def _entry(kind: str, root: Path, path: Path, provenance: dict[str, Any] | None = None,
           status: str = "ok") -> CacheEntry:
    size, mtime = _size_and_mtime(path)
    return CacheEntry(kind, path.relative_to(root).as_posix(), size, _iso(mtime), provenance or {}, status)


def _store_entries(root: Path) -> list[CacheEntry]:
    out = []
    for d in sorted((root / "stores").glob("*")) if (root / "stores").is_dir() else []:
        if not d.is_dir():
            continue
        meta = d / "meta.json"
        try:
            doc = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            out.append(_entry("store", root, d, {}, "incomplete"))
            continue
        prov = dict(doc.get("provenance") or {})
        prov.setdefault("modality", doc.get("modality"))
        prov["items"], prov["dim"] = doc.get("n"), doc.get("dim")
        out.append(_entry("store", root, d, prov))
    return out


def _work_entries(root: Path, committed_keys: set[str]) -> list[CacheEntry]:
    out = []
    for d in sorted((root / "work").glob("*")) if (root / "work").is_dir() else []:
        if not d.is_dir():
            continue
        modality, _, key = d.name.rpartition("-")
        shards = len(list(d.glob("shard-*.npy")))
        prov = {"modality": modality, "cache_key": key, "shards": shards,
                "fitted_state": (d / "model" / "DONE").exists()}
        out.append(_entry("work", root, d, prov, "done" if key in committed_keys else "ok"))
    return out


def _unit_entries(root: Path) -> list[CacheEntry]:
    out = []
    units = root / "units"
    for recipe in sorted(units.glob("*")) if units.is_dir() else []:
        for group in sorted(recipe.glob("*")):
            if group.is_dir():
                prov = {"recipe": recipe.name, "group": group.name, "units": len(list(group.glob("*.pkl")))}
                out.append(_entry("units", root, group, prov))
    return out


def scan(cache_dir: str | os.PathLike[str]) -> list[CacheEntry]:
    """Every entry of a cache folder, with provenance, size and status (see the module doc)."""
    root = Path(cache_dir)
    if not root.is_dir():
        raise FusionkitError(f"no cache folder at {str(root)!r}", where=str(root),
                             hint="give a cache folder, a run folder (with cache/ inside) or a recipe")
    stores = _store_entries(root)
    committed = {str(e.provenance.get("cache_key")) for e in stores if e.status == "ok"}
    out = stores + _work_entries(root, committed) + _unit_entries(root)
    fp = root / "fingerprints.json"
    if fp.is_file():
        out.append(_entry("fingerprints", root, fp))
    return out


def stale_reasons(entry: CacheEntry, current_code: Callable[[str, str], str | None]) -> list[str]:
    """Why a store can no longer be produced: its code or local weights changed since.

    ``current_code(kind, name)`` gives the fingerprint of a component's source now
    (None when it is not registered any more).
    """
    from .cachekeys import weights_fingerprint

    reasons = []
    for kind in ("encoder", "adapter"):
        comp = entry.provenance.get(kind)
        if not isinstance(comp, dict) or not comp.get("name"):
            continue
        code = comp.get("code")
        if code:
            now = current_code(kind, comp["name"])
            if now is None:
                reasons.append(f"{kind} {comp['name']} is not registered")
            elif now != code:
                reasons.append(f"{kind} {comp['name']} code changed")
        weights = comp.get("weights") or {}
        if weights:
            now_w = weights_fingerprint({"w": list(weights)}, ["w"])
            changed = [p for p, fp in weights.items() if now_w.get(os.path.realpath(p)) != fp]
            if changed:
                reasons.append(f"{kind} {comp['name']} weights changed ({Path(changed[0]).name})")
    return reasons


def resolve_cache_dir(where: str | None) -> Path:
    """A cache folder from a cache folder, a run folder, a recipe file, or ``$FUSIONKIT_CACHE``."""
    if not where:
        env = os.environ.get("FUSIONKIT_CACHE")
        if not env:
            raise FusionkitError("which cache?", where="fusionkit cache",
                                 hint="give a cache folder, a run folder or a recipe, or set FUSIONKIT_CACHE")
        return Path(env)
    p = Path(where)
    if p.is_file():
        import yaml

        try:
            doc = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise FusionkitError(f"cannot read recipe: {exc}", where=str(p)) from exc
        out = doc.get("output") or {}
        if out.get("cache"):
            return Path(out["cache"])
        if os.environ.get("FUSIONKIT_CACHE"):
            return Path(os.environ["FUSIONKIT_CACHE"])
        return Path(out.get("dir") or f"runs/{doc.get('name', 'run')}") / "cache"
    if (p / "cache").is_dir() and not (p / "stores").is_dir():
        return p / "cache"
    return p


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def describe(e: CacheEntry) -> str:
    """One line of provenance for ``cache ls``."""
    p = e.provenance
    if e.kind == "store":
        enc = p.get("encoder") or {}
        ad = p.get("adapter") or {}
        chain = f"{enc.get('name', '?')} {enc.get('version') or ''}".strip() + (f" -> {ad['name']}" if ad.get("name")
                                                                                 else "")
        return f"{p.get('modality')}: {chain}; {p.get('items')} x {p.get('dim')}; created {p.get('created', '?')[:19]}"
    if e.kind == "work":
        return f"{p.get('modality')}: {p.get('shards')} shards" + (", fitted state" if p.get("fitted_state") else "")
    if e.kind == "units":
        return f"{p.get('recipe')} / {p.get('group')}: {p.get('units')} units"
    return "input fingerprints"


# ----------------------------------------------------------------------------- commands

def _current_code_from(ctx: click.Context) -> Callable[[str, str], str | None]:
    from .cachekeys import source_fingerprint

    system = None

    def code(kind: str, name: str) -> str | None:
        nonlocal system
        if system is None:
            from .plugins import load

            obj = ctx.find_root().obj or {}
            system = load(plugins_dir=obj.get("plugins_dir"), strict=obj.get("strict") or None)
        if not system.registry.has(kind, name):
            return None
        return source_fingerprint(system.info(kind, name).factory)

    return code


@click.group(name="cache")
def cache() -> None:
    """Show (ls) and clean (prune) cached embeddings, encoder state and experiment repeats."""


def _open_cache(ctx: click.Context, where: str | None) -> tuple[Path, list[Any]]:
    """The cache folder named by WHERE and its entries; a bad WHERE is one message, exit 1."""
    try:
        root = resolve_cache_dir(where)
        return root, scan(root)
    except FusionkitError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(1)
        raise  # not reached: ctx.exit raises


@cache.command(name="ls")
@click.argument("where", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON entries with provenance.")
@click.pass_context
def ls_cmd(ctx: click.Context, where: str | None, as_json: bool) -> None:
    """List the entries of a cache (WHERE: cache folder, run folder or recipe; default $FUSIONKIT_CACHE)."""
    root, entries = _open_cache(ctx, where)
    code = _current_code_from(ctx)
    for e in entries:
        if e.kind == "store" and e.status == "ok":
            reasons = stale_reasons(e, code)
            e.status = "stale: " + "; ".join(reasons) if reasons else "ok"
    if as_json:
        click.echo(json.dumps({"cache": str(root.resolve()), "entries": [e.as_dict() for e in entries]}, indent=2,
                              default=str))
        return
    total = sum(e.size_bytes for e in entries)
    click.echo(f"{root}: {len(entries)} entries, {human(total)}")
    for e in entries:
        flag = "" if e.status == "ok" else f"  [{e.status}]"
        click.echo(f"  {e.kind:<12} {human(e.size_bytes):>9}  {e.modified[:16]}  {e.path}")
        click.echo(f"  {'':<12} {'':>9}  {describe(e)}{flag}")


@cache.command(name="prune")
@click.argument("where", required=False)
@click.option("--older-than", "older_than", type=float, default=None, metavar="DAYS",
              help="Also remove entries not modified for DAYS days.")
@click.option("--all", "everything", is_flag=True, help="Remove every entry.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON list of removed entries.")
@click.pass_context
def prune_cmd(ctx: click.Context, where: str | None, older_than: float | None, everything: bool, dry_run: bool,
              as_json: bool) -> None:
    """Remove entries that can never be used again (finished work, uncommitted or stale stores)."""
    root, entries = _open_cache(ctx, where)
    code = _current_code_from(ctx)
    cutoff = None if older_than is None else _dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(days=older_than)
    gone = []
    for e in entries:
        reasons = [] if e.kind != "store" or e.status != "ok" else stale_reasons(e, code)
        why = ("--all" if everything else e.status if e.status in ("done", "incomplete")
               else "stale: " + "; ".join(reasons) if reasons
               else f"older than {older_than:g} days" if cutoff and _dt.datetime.fromisoformat(e.modified) < cutoff
               else None)
        if why is None or (e.kind == "fingerprints" and not everything):
            continue
        gone.append({**e.as_dict(), "reason": why})
        if not dry_run:
            target = root / e.path
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    if as_json:
        click.echo(json.dumps({"cache": str(root.resolve()), "dry_run": dry_run, "removed": gone}, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for g in gone:
        click.echo(f"{verb} {g['path']} ({human(g['size_bytes'])}): {g['reason']}")
    click.echo(f"{verb} {len(gone)} entries, {human(sum(g['size_bytes'] for g in gone))}")
