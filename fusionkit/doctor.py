"""``fusionkit doctor``: what this machine can run, without loading any model.

It reports installed extras, torch/CUDA, whether ``timm`` and ``torchvision``
import, every registered encoder's weights (available offline from a package,
a local path or the Hugging Face cache; gated or not; whether a hub token is
configured — its value is never read out), the slide backends and Ray, and
gives each problem with the command that fixes it. ``fusionkit validate`` runs
the same weight check on a recipe's encoders.

Nothing here imports torch, timm, torchvision, scikit-learn or faiss: packages
are looked up with ``importlib.util.find_spec`` / ``importlib.metadata``, and
the torch/timm/torchvision import check runs in a child process.

**Declaring an encoder's weights.** An encoder tells the doctor where its
weights come from with a ``weights=[...]`` keyword to ``register`` (or a
``weights_check`` entry in its ``card``): a list of alternatives, the first
that applies to the encoder's parameters decides. Keys of one alternative:

``param``      the constructor parameter it depends on; with ``when`` (values,
               case-insensitive) it applies only for those values, with
               ``unless`` not for those; with neither, when the value is set
``path``       true: the parameter's value is a local file or folder that must
               exist (``path_like``: only when the value looks like a path)
``packages``   distributions that ship the weights (``modules``: their import
               names; ``install``: the fix command; ``alt_paths``: local paths
               that also do, ``${VAR:-default}`` and ``~`` expanded)
``hub``        a Hugging Face repo id (``hub_param``: the parameter that holds
               it, ``hub_prefix`` added to ids without ``/``, ``strip`` removed
               from the front; ``files`` needed in the snapshot; ``hub_match:
               prefix`` for timm's ``<model>.<tag>`` repos); ``gated``: true
``kind``       ``trained`` / ``random`` / ``none``: no weights to fetch

Encoders without a declaration are judged by their ``weights_source``
(``trained``/``fitted``/``none`` need nothing; otherwise "unknown").
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import __version__

#: the child process that checks what imports (so this process never imports torch)
_PROBE = r"""
import json
out = {}
def first_line(exc):
    text = str(exc).strip().splitlines()
    return type(exc).__name__ + (": " + text[0] if text else "")
try:
    import torch
    cuda = bool(torch.cuda.is_available())
    out["torch"] = {"importable": True, "version": torch.__version__, "cuda_available": cuda,
                    "cuda_version": torch.version.cuda, "devices": torch.cuda.device_count() if cuda else 0}
except Exception as exc:
    out["torch"] = {"importable": False, "error": first_line(exc)}
for name in ("torchvision", "timm"):
    try:
        module = __import__(name)
        out[name] = {"importable": True, "version": getattr(module, "__version__", None)}
    except Exception as exc:
        out[name] = {"importable": False, "error": first_line(exc)}
print(json.dumps(out))
"""
TIMM_FIX = ("pip install --no-deps timm, plus a torchvision built for your torch "
            "(on CPU-only torch: see docs/INSTALL_NOTES.md)")


# --------------------------------------------------------------------------- lookups (patched in tests)

def _installed(dist: str) -> str | None:
    """The installed version of a distribution, or None."""
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _importable(module: str) -> bool:
    """Whether ``module`` can be found (not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _expand(path: str) -> Path:
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), str(path))
    return Path(os.path.expanduser(os.path.expandvars(text)))


def hub_cache() -> Path:
    """The Hugging Face hub cache folder, as huggingface_hub resolves it."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.path.expanduser(os.environ[var]))
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def hub_token() -> tuple[bool, str | None]:
    """(configured, where): a Hugging Face token in the environment or the token file. Never its value."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return True, f"environment variable {var}"
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    path = Path(os.path.expanduser(os.environ.get("HF_TOKEN_PATH") or os.path.join(home, "token")))
    try:
        if path.is_file() and path.stat().st_size > 0:
            return True, f"token file {path}"
    except OSError:
        pass
    return False, None


def hub_snapshot(repo: str, files: list[str] | None = None, prefix: bool = False) -> Path | None:
    """A cached snapshot folder of ``repo`` holding ``files`` (any file when none), or None."""
    root = hub_cache()
    name = "models--" + repo.replace("/", "--")
    repos = sorted(root.glob(name + "*")) if prefix else [root / name]
    for folder in repos:
        for snap in sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []:
            if files and all((snap / f).exists() for f in files):
                return snap
            if not files and any(snap.iterdir()):
                return snap
    return None


# --------------------------------------------------------------------------- weights

def _applies(alt: dict[str, Any], params: dict[str, Any]) -> bool:
    if "param" not in alt:
        return True
    value = params.get(alt["param"])
    text = str(value).strip().lower() if value is not None else ""
    if "when" in alt:
        return text in {str(v).lower() for v in alt["when"]}
    if "unless" in alt and text in {str(v).lower() for v in alt["unless"]}:
        return False
    if alt.get("path_like") and not (str(value).startswith(("/", "./", "../", "~")) or _expand(str(value)).exists()):
        return False  # "org/name" is a hub id unless such a folder exists
    return bool(value) and text not in ("none", "false")


def _status(status: str, source: str, detail: str, fix: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"status": status, "source": source, "detail": detail, "fix": fix, **extra}


def _check_packages(alt: dict[str, Any]) -> dict[str, Any]:
    dists = list(alt.get("packages", []))
    modules = list(alt.get("modules", []))
    missing = [d for d in dists if _installed(d) is None] + [m for m in modules if not _importable(m)]
    names = ", ".join(dists)
    if not missing:
        return _status("ok", "package", f"pip package {names}")
    for p in alt.get("alt_paths", []):
        if _expand(p).exists():
            return _status("ok", "local path", f"unpacked copy at {_expand(p)}")
    fix = alt.get("install") or "pip install " + " ".join([d for d in dists if _installed(d) is None] or dists)
    return _status("missing", "package", f"not installed: {', '.join(sorted(set(missing)))}", fix)


def _check_hub(alt: dict[str, Any], params: dict[str, Any], path_param: str | None) -> dict[str, Any]:
    repo = str(params.get(alt["hub_param"]) if alt.get("hub_param") else alt["hub"])
    if alt.get("strip") and repo.startswith(alt["strip"]):
        repo = repo[len(alt["strip"]):]
    if "/" not in repo and alt.get("hub_prefix"):
        repo = alt["hub_prefix"] + repo
    gated = bool(alt.get("gated"))
    token, where = hub_token()
    extra = {"repo": repo, "gated": gated, "token_configured": token, "token_source": where}
    snap = hub_snapshot(repo, alt.get("files"), prefix=alt.get("hub_match") == "prefix")
    if snap is not None:
        return _status("ok", "hub cache", f"{repo} in the Hugging Face cache ({snap})", **extra)
    files = " ".join(alt.get("files") or [])
    fix = f"on a connected machine: huggingface-cli download {repo} {files}".rstrip()
    fix += f", then copy {hub_cache()} here"
    if gated:
        login = "" if token else "; `huggingface-cli login` (or set HF_TOKEN) before downloading"
        fix = f"accept the licence at https://huggingface.co/{repo}{login}; {fix}"
    if path_param:
        fix += f"; or set {path_param}: /path/to/weights"
    return _status("missing", "hub cache", f"{repo} is not in the Hugging Face cache ({hub_cache()})", fix, **extra)


def weights_spec(info: Any) -> list[dict[str, Any]] | None:
    """An encoder's declared weight sources (``register(..., weights=[...])`` or ``card['weights_check']``)."""
    spec = (info.metadata or {}).get("weights")
    if spec is None:
        spec = (info.factory.card or {}).get("weights_check")
    return list(spec) if spec else None


def weight_status(info: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Whether an encoder's weights are available offline, for ``params`` (defaults filled in)."""
    try:
        merged = {**info.factory.default_params(), **(params or {})}
    except Exception:  # pragma: no cover - exotic factories
        merged = dict(params or {})
    card = {**(info.factory.card or {}), **(info.metadata or {})}
    gated = bool(card.get("gated"))
    spec = weights_spec(info)
    if spec is None:
        source = str(card.get("weights_source") or "none").lower()
        if source in ("none", "n/a", "") or "trained" in source or "fitted" in source:
            return _status("not-needed", "none" if "none" in source or "n/a" in source else "trained on your data",
                           str(card.get("weights_source") or "no pretrained weights"), gated=gated)
        return _status("unknown", "undeclared", f"{card.get('weights_source')} (the encoder declares no offline "
                       "check)", gated=gated)
    path_param = next((a["param"] for a in spec if a.get("path") and "param" in a), None)
    for alt in spec:
        if not _applies(alt, merged):
            continue
        if alt.get("kind"):
            kind = alt["kind"]
            return _status("not-needed", kind, {"trained": "trained on your data", "random": "random initialisation",
                                                 "none": "no weights"}.get(kind, kind), gated=gated)
        if alt.get("path"):
            value = str(merged.get(alt["param"]))
            found = _expand(value).exists()
            return _status("ok" if found else "missing", "local path", value,
                           None if found else f"set {alt['param']} to an existing file or folder", gated=gated)
        if alt.get("packages"):
            return {**_check_packages(alt), "gated": gated}
        if alt.get("hub") or alt.get("hub_param"):
            return _check_hub(alt, merged, path_param)
    return _status("not-needed", "none", "no alternative applies to these parameters", gated=gated)


def encoder_report(system: Any) -> list[dict[str, Any]]:
    """Every registered encoder with its (default) weight status."""
    out = []
    for info in system.registry.all("encoder"):
        d = info.as_dict()
        out.append({"name": info.name, "provider": d.get("provider"), "modality": d.get("modality"),
                    "licence": d.get("licence"), "weights": weight_status(info)})
    return out


def recipe_weights(recipe: Any, system: Any) -> list[dict[str, Any]]:
    """The weight status of each encoder a recipe uses, with its recipe path (``validate``)."""
    out = []
    for name, mspec in recipe.modalities.items():
        spec = mspec.encoder
        try:
            status = weight_status(system.info("encoder", spec.name), dict(spec.params or {}))
        except Exception as exc:  # a declaration this check cannot read must not break validate
            status = _status("unknown", "error", f"weight check failed: {type(exc).__name__}: {exc}")
        out.append({"where": f"modalities.{name}.encoder", "encoder": spec.name, "weights": status})
    return out


# --------------------------------------------------------------------------- machine

def _fusionkit_root() -> Path:
    return Path(__file__).resolve().parents[1]


def _declared_extras() -> dict[str, list[str]]:
    """Extras -> distribution names: the checkout's pyproject.toml when there is one, else installed metadata."""
    pyproject = _fusionkit_root() / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib

            table = tomllib.loads(pyproject.read_text()).get("project", {}).get("optional-dependencies", {})
            return {k: [_req_name(r) for r in v] for k, v in table.items()}
        except (ImportError, ValueError):
            pass
    out: dict[str, list[str]] = {}
    try:
        meta = md.metadata("fusionkit")
    except md.PackageNotFoundError:
        return out
    for extra in meta.get_all("Provides-Extra") or []:
        out[extra] = [_req_name(r) for r in meta.get_all("Requires-Dist") or [] if f'extra == "{extra}"' in r]
    return out


def _req_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return m.group(1) if m else req.strip()


def _install_extra(extra: str) -> str:
    root = _fusionkit_root()
    if (root / "pyproject.toml").is_file():
        return f'pip install -e "{root}[{extra}]"'
    return f'pip install "fusionkit[{extra}]"'


def extras_report() -> dict[str, dict[str, Any]]:
    out = {}
    for extra, dists in sorted(_declared_extras().items()):
        missing = [d for d in dists if _installed(d) is None]
        out[extra] = {"installed": not missing, "missing": missing,
                      "fix": _install_extra(extra) if missing else None}
    return out


def probe_imports(timeout: float = 180.0) -> dict[str, Any]:
    """torch / torchvision / timm, imported in a child process (CUDA status included)."""
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return {name: {"importable": None, "error": f"import check failed: {type(exc).__name__}"}
                for name in ("torch", "torchvision", "timm")}


def quick_imports() -> dict[str, Any]:
    """Like :func:`probe_imports` from package metadata only (``--quick``): nothing is imported."""
    out = {}
    for name in ("torch", "torchvision", "timm"):
        found = _importable(name)
        out[name] = {"importable": found if found else False, "version": _installed(name), "checked": "find_spec"}
    out["torch"]["cuda_available"] = None
    return out


def slide_backends() -> dict[str, Any]:
    """OpenSlide (its C library loaded through openslide-python) and tiffslide."""
    out: dict[str, Any] = {}
    entry: dict[str, Any] = {"installed": _importable("openslide"), "version": _installed("openslide-python"),
                             "library": _installed("openslide-bin")}
    if entry["installed"]:
        try:
            import openslide  # light: a ctypes binding, no model code

            entry["library_version"] = getattr(openslide, "__library_version__", None)
            entry["usable"] = True
        except Exception as exc:  # OSError when the shared library is missing
            entry.update(usable=False, error=f"{type(exc).__name__}: {exc}")
    out["openslide"] = entry
    out["tiffslide"] = {"installed": _importable("tiffslide"), "version": _installed("tiffslide"),
                        "usable": _importable("tiffslide") and _importable("tifffile")}
    return out


def _problems(report: dict[str, Any]) -> list[dict[str, str]]:
    probs = []
    for extra, e in report["extras"].items():
        if not e["installed"]:
            probs.append({"what": f"extra {extra}", "message": f"not installed: {', '.join(e['missing'])}",
                          "fix": e["fix"]})
    imports = report["imports"]
    if imports["torch"].get("importable") is False:
        probs.append({"what": "torch", "message": imports["torch"].get("error") or "not installed",
                      "fix": "pip install torch==2.13.0 (CPU wheel; see the README), then " + _install_extra("ml")})
    for name in ("timm", "torchvision"):
        if imports[name].get("importable") is False:
            probs.append({"what": name, "message": imports[name].get("error") or "not installed", "fix": TIMM_FIX})
    for enc in report["encoders"]:
        w = enc["weights"]
        if w["status"] == "missing":
            probs.append({"what": f"encoder {enc['name']}", "message": w["detail"], "fix": w["fix"] or ""})
    slides = report["slide_backends"]
    if not (slides["openslide"].get("usable") or slides["tiffslide"].get("usable")):
        probs.append({"what": "slide backends", "message": "neither OpenSlide nor tiffslide is usable",
                      "fix": _install_extra("wsi")})
    elif slides["openslide"]["installed"] and not slides["openslide"].get("usable"):
        probs.append({"what": "openslide", "message": slides["openslide"].get("error", "library missing"),
                      "fix": "pip install openslide-bin"})
    if not report["ray"]["installed"]:
        probs.append({"what": "ray", "message": "not installed (needed for executor: ray)",
                      "fix": _install_extra("ray")})
    for plugin in report["plugins"]:
        probs.append({"what": f"plugin {plugin['name']}", "message": f"{plugin['status']}: {plugin['error']}",
                      "fix": "see `fusionkit plugins`; reinstall or remove the plugin's distribution"})
    return probs


def diagnose(system: Any, *, quick: bool = False) -> dict[str, Any]:
    """The whole doctor report (JSON-able)."""
    report: dict[str, Any] = {
        "fusionkit": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "extras": extras_report(),
        "imports": quick_imports() if quick else probe_imports(),
        "encoders": encoder_report(system),
        "hub": {"cache": str(hub_cache()), "offline": os.environ.get("HF_HUB_OFFLINE") == "1",
                "token_configured": hub_token()[0]},
        "slide_backends": slide_backends(),
        "ray": {"installed": _importable("ray"), "version": _installed("ray")},
        "plugins": [{"name": r.name, "status": r.status, "error": (r.error or "").splitlines()[0] if r.error else ""}
                    for r in getattr(system, "records", []) if r.status not in ("ok", "disabled")],
    }
    report["problems"] = _problems(report)
    return report


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    def mark(ok: Any) -> str:
        return "?" if ok is None else ("ok" if ok else "MISSING")

    lines = [f"fusionkit {report['fusionkit']} on Python {report['python']} ({report['platform']})", "", "extras:"]
    lines += [f"  {k:<10} {mark(v['installed'])}" for k, v in report["extras"].items()]
    t = report["imports"]["torch"]
    cuda = "" if t.get("cuda_available") is None else (", CUDA available" if t["cuda_available"]
                                                       else ", CUDA not available")
    lines += ["", f"torch:       {mark(t.get('importable'))} {t.get('version') or ''}{cuda}"]
    for name in ("torchvision", "timm"):
        e = report["imports"][name]
        lines.append(f"{name + ':':<13}{mark(e.get('importable'))} {e.get('version') or e.get('error') or ''}")
    hub = report["hub"]
    lines += ["", f"hub cache: {hub['cache']}  (token configured: {'yes' if hub['token_configured'] else 'no'})",
              "", "encoders (weights with default parameters):"]
    for e in report["encoders"]:
        w = e["weights"]
        gated = " [gated]" if w.get("gated") else ""
        what = w["source"] if w["detail"] in (w["source"], "none") else f"{w['source']}: {w['detail']}"
        lines.append(f"  {e['name']:<20} {w['status']:<11} {what}{gated}")
    sb = report["slide_backends"]
    lines += ["", f"slides: openslide {mark(sb['openslide'].get('usable', sb['openslide']['installed']))}, "
                  f"tiffslide {mark(sb['tiffslide'].get('usable'))}",
              f"ray:    {mark(report['ray']['installed'])} {report['ray']['version'] or ''}", ""]
    if report["problems"]:
        lines.append(f"{len(report['problems'])} problem(s):")
        for p in report["problems"]:
            lines += [f"  - {p['what']}: {p['message']}", f"    fix: {p['fix']}"]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
