"""What a run was, as data: the run view (metrics, data summary, resolved recipe,
run record), the study in one paragraph, and per-modality availability and
embedding health. Shared by the HTML report and the text views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import FusionkitError
from .claims import Claim, evaluate_claims, pretty, verdict_counts
from .fmt import as_float, num, plain

if TYPE_CHECKING:  # type checkers only
    from ..context import RunContext


@dataclass
class RunView:
    """Everything the report shows, read from a run context or a finished run folder."""

    out_dir: Path
    name: str
    metrics: Mapping[str, Any]
    summary: Mapping[str, Any]
    recipe: Mapping[str, Any] = field(default_factory=dict)
    record: Mapping[str, Any] = field(default_factory=dict)
    recipe_yaml: str = ""
    claims: list[Claim] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.claims:
            self.claims = evaluate_claims(self.ordered_metrics)

    @property
    def ordered_metrics(self) -> dict[str, Any]:
        """Every task's result, in recipe order."""
        return {t: self.metrics[t] for t in self.tasks}

    @property
    def tasks(self) -> list[str]:
        """Task names in recipe order (metrics.json may hold them sorted), then any others."""
        have = [t for t, r in (self.metrics or {}).items() if isinstance(r, Mapping)]
        order = [t for t in (self.recipe.get("tasks") or {}) if t in have]
        return order + [t for t in have if t not in order]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise FusionkitError(f"cannot read {path.name}: {exc}", where=str(path),
                             hint="the run may have been interrupted; run it again") from exc


def _read_yaml(path: Path) -> tuple[dict[str, Any], str]:
    if not path.exists():
        return {}, ""
    text = path.read_text()
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - a broken recipe copy only loses the study paragraph
        data = None
    return (data if isinstance(data, dict) else {}), text


def load_run(run_dir: str | Path) -> RunView:
    """A finished run folder as a :class:`RunView` (needs ``metrics.json`` and ``data_summary.json``)."""
    out = Path(run_dir)
    metrics = _read_json(out / "metrics.json")
    summary = _read_json(out / "data_summary.json")
    for fname, value in (("metrics.json", metrics), ("data_summary.json", summary)):
        if value is None:
            raise FusionkitError(f"{fname} not found", where=str(out),
                                 hint="give the output folder of a finished `fusionkit run` with tasks")
    recipe, text = _read_yaml(out / "resolved_recipe.yaml")
    record = _read_json(out / "run.json") or {}
    name = str(recipe.get("name") or record.get("name") or out.name)
    return RunView(out, name, metrics, summary, recipe, record, text)


def view_from_context(ctx: "RunContext", metrics: Mapping[str, Any], summary: Mapping[str, Any]) -> RunView:
    """A :class:`RunView` of a run in progress (the engine's context)."""
    out = Path(getattr(ctx, "out_dir", "."))
    recipe_obj = getattr(ctx, "recipe", None)
    recipe, text = _read_yaml(out / "resolved_recipe.yaml")
    if not recipe and recipe_obj is not None:
        try:
            recipe = dict(recipe_obj.to_dict())
        except Exception:  # noqa: BLE001 - a stand-in recipe without to_dict
            recipe = {"name": getattr(recipe_obj, "name", "run"),
                      "description": getattr(recipe_obj, "description", ""),
                      "seed": getattr(ctx, "seed", None)}
    if not text and recipe_obj is not None and hasattr(recipe_obj, "to_yaml"):
        try:
            text = recipe_obj.to_yaml()
        except Exception:  # noqa: BLE001
            text = ""
    timings = dict(getattr(ctx, "timings", None) or {})
    record = {"seed": getattr(ctx, "seed", recipe.get("seed")), "timings_s": timings}
    name = str(getattr(recipe_obj, "name", None) or recipe.get("name") or "run")
    return RunView(out, name, metrics or {}, summary or {}, recipe, record, text)


# ----------------------------------------------------------------------------- cohort and modalities

def _label_counts(summary: Mapping[str, Any]) -> tuple[str | None, dict[str, int]]:
    labels = summary.get("labels") or {}
    for key in ("cancer_type", *labels):
        counts = labels.get(key)
        if isinstance(counts, Mapping) and counts:
            return key, {str(k): int(v) for k, v in counts.items() if as_float(v) is not None}
    return None, {}


def n_patients(summary: Mapping[str, Any]) -> int:
    """Patients in the cohort: the labelled patients, else the best-covered modality's."""
    _, counts = _label_counts(summary)
    mods = summary.get("modalities") or {}
    best = max([int(e.get("patients") or 0) for e in mods.values() if isinstance(e, Mapping)] + [0])
    return max(sum(counts.values()), best)


def _encoder_text(spec: Any) -> str:
    if isinstance(spec, Mapping):
        return str(spec.get("name", "?"))
    return str(spec) if spec else "?"


def modality_rows(view: RunView) -> list[dict[str, Any]]:
    """Per modality: encoder chain, patients, availability, norms and any ``health`` entry."""
    mods = view.summary.get("modalities") or {}
    recipe_mods = view.recipe.get("modalities") or {}
    health = view.summary.get("health") or {}
    total = n_patients(view.summary) or 1
    rows = []
    order = [m for m in recipe_mods if m in mods] + [m for m in mods if m not in recipe_mods]
    for name in order:
        e = mods[name]
        if not isinstance(e, Mapping):
            continue
        spec = recipe_mods.get(name) or {}
        enc = _encoder_text(spec.get("encoder"))
        if spec.get("adapter"):
            enc += " -> " + _encoder_text(spec.get("adapter"))
        mean_norm, offset = as_float(e.get("mean_norm")), as_float(e.get("norm_of_mean"))
        patients = int(e.get("patients") or 0)
        rows.append({"modality": name, "encoder": enc, "items": e.get("items"), "patients": patients,
                     "availability": patients / total, "dim": e.get("dim"), "mean_norm": mean_norm,
                     "norm_of_mean": offset,
                     "offset_ratio": (offset / mean_norm) if mean_norm and offset is not None else None,
                     **_health_fields(health.get(name) if isinstance(health, Mapping) else None,
                                      view.summary.get("primary_label"))})
    return rows


_STATUS_KEYS = ("status", "verdict", "state", "ok", "healthy")
_FLAG_KEYS = ("flags", "warnings", "issues", "problems", "notes", "message")


def _health_fields(entry: Any, label: str | None = None) -> dict[str, Any]:
    """A ``data_summary.json`` ``health`` entry of one modality (:mod:`fusionkit.health`) as a
    status, a short note and the linear probe's macro-F1 for ``label`` (else the first probe)."""
    if entry is None:
        return {}
    if not isinstance(entry, Mapping):
        return {"health": plain(entry)}
    probes = entry.get("probes") if isinstance(entry.get("probes"), Mapping) else {}
    probe = probes.get(label) if label in probes else next(iter(probes.values()), None)
    probe_f1 = as_float(probe.get("macro_f1")) if isinstance(probe, Mapping) else None
    status = next((entry[k] for k in _STATUS_KEYS if k in entry), None)
    if isinstance(status, bool):
        status = "ok" if status else "check"
    flags = [entry[k] for k in _FLAG_KEYS if entry.get(k)]
    note = "; ".join(plain(f) for f in flags)
    details = {k: v for k, v in entry.items() if k not in _STATUS_KEYS + _FLAG_KEYS}
    return {"health": str(status) if status is not None else ("check" if note else "ok"),
            "health_note": note, "health_details": details, "probe_f1": probe_f1}


def cohort_text(view: RunView) -> str:
    """``600 patients of 6 cancer types (BRCA 100, ...) from synthetic-tcga``."""
    label, counts = _label_counts(view.summary)
    total = n_patients(view.summary)
    readers = []
    for spec in (view.recipe.get("modalities") or {}).values():
        r = _encoder_text((spec or {}).get("reader"))
        if r not in readers and r != "?":
            readers.append(r)
    text = f"{total} patients"
    if counts:
        what = label.replace("_", " ") + ("s" if len(counts) != 1 else "")
        shown = ", ".join(f"{k} {v}" for k, v in list(counts.items())[:8])
        text += f" of {len(counts)} {what} ({shown}{', ...' if len(counts) > 8 else ''})"
    if readers:
        text += " from " + " and ".join(readers)
    return text


def is_synthetic(view: RunView) -> bool:
    readers = [_encoder_text((s or {}).get("reader")) for s in (view.recipe.get("modalities") or {}).values()]
    return any("synthetic" in r for r in readers)


def study_sentences(view: RunView) -> list[str]:
    """The study in a few plain sentences (the report's first paragraph, also printed by ``results``)."""
    out = [f"{view.name}: {cohort_text(view)}."]
    mods = modality_rows(view)
    if mods:
        parts = [f"{m['modality']} ({m['encoder']}; {m['patients']} patients, {num(100 * m['availability'], 0)}%)"
                 for m in mods]
        width = view.recipe.get("width")
        out.append(f"Modalities: {', '.join(parts)}" + (f", all at width {width}." if width else "."))
    if view.tasks:
        out.append(f"{len(view.tasks)} task{'s' if len(view.tasks) != 1 else ''}: {', '.join(view.tasks)}.")
    counts = verdict_counts(view.claims)
    measured = len(view.claims) - counts["not comparable"]
    holds, fails = counts["holds"], counts["does not hold"]
    out.append(f"Of the paper's {len(view.claims)} claims, {measured} {'is' if measured == 1 else 'are'} measured "
               f"here: {holds} hold{'s' if holds == 1 else ''}, {counts['partly']} partly, {fails} "
               f"{'does' if fails == 1 else 'do'} not hold.")
    if is_synthetic(view):
        out.append("The cohort is synthetic: verdicts check the pipeline, not the biology.")
    return [pretty(s) for s in out]
