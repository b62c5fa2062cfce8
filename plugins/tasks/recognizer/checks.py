"""The recognizer tasks' parameters: their names and kinds, the declared constraints that
``fusionkit validate`` checks, and the recipe-level checks (sampling entry, perturbations,
modes, loss, head weights) with one message per problem."""

from __future__ import annotations

from typing import Any

from fusionkit import Check, FusionkitError, Range
from fusionkit_plugins.sampling.samplers import k_problem, parse_k
from fusionkit_plugins.tasks.recognizer.data import CANCER_MODALITY
from fusionkit_plugins.tasks.recognizer.models import LR_SCHEDULES, SHORTCUTS

RECOGNIZER_SAMPLERS = ("modality-level", "cancer-specific")
MODES = ("isolation", "composite")
LOSSES = ("mse", "mae", "bce")
#: parameters that shape the data, splits and evaluation (shared by every model)
DATA_PARAMS = ("sampling", "k", "n_per_k", "perturbations", "predict_cancer", "threshold", "drop_empty",
               "test_fraction", "val_fraction")


COUNT, FRACTION = Range(1, integer=True), Range(0, 1, lo_open=True, hi_open=True)
#: declared parameter constraints (checked by ``fusionkit validate``)
CONSTRAINTS = {"k": Check(lambda k: None if k is None else k_problem(k), "sample counts >= 1"),
               "n_per_k": COUNT, "n_repeats": COUNT, "test_fraction": FRACTION,
               "val_fraction": Range(0, 1, hi_open=True), "threshold": Range(0, 1), "threads": COUNT,
               "max_iter": COUNT, "C": Range(0, lo_open=True), "baseline_C": Range(0, lo_open=True),
               "head_hidden": COUNT, "max_epochs": COUNT, "batch_size": COUNT, "lr": Range(0, lo_open=True),
               "dropout": Range(0, 1, hi_open=True), "patience": Range(0, integer=True),
               "precision": Check(lambda v: None if v in ("fp32", "bf16") else f"must be fp32 or bf16, got {v!r}",
                                  "fp32 or bf16"), "batch_repeats": COUNT,
               "lr_schedule": Check(lambda v: None if v in LR_SCHEDULES else
                                    f"must be one of {', '.join(LR_SCHEDULES)}, got {v!r}", " or ".join(LR_SCHEDULES))}


def recipe_sampling_name(params: dict[str, Any], recipe: Any) -> tuple[str | None, str | None]:
    """(entry name, problem) of the sampling entry a recognizer uses."""
    name = params.get("sampling") or ""
    table = getattr(recipe, "sampling", {}) or {}
    if not name:
        usable = [key for key, spec in table.items() if spec.name in RECOGNIZER_SAMPLERS]
        if len(usable) == 1:
            return usable[0], None
        if not usable:
            return None, "no modality-level or cancer-specific sampling entry in the recipe"
        return None, f"several sampling entries could serve ({', '.join(usable)}): name one"
    if name not in table:
        return None, f"no sampling entry named {name!r}"
    spec = table[name]
    tags = (spec.info.metadata.get("tags") or []) if spec.info else []
    if spec.name not in RECOGNIZER_SAMPLERS and "recognizer" not in tags:
        return None, (f"sampling entry {name!r} uses sampler {spec.name!r}; the recognizer needs "
                      f"modality-level or cancer-specific sampling")
    return name, None


def check_params(params: dict[str, Any], recipe: Any) -> list[tuple[str, str, str]]:
    """(recipe path under the task, problem, hint) for every problem of ``params`` (defaults filled in)."""
    out: list[tuple[str, str, str]] = []
    table = getattr(recipe, "sampling", {}) or {}
    name, problem = recipe_sampling_name(params, recipe)
    if problem:
        out.append(("params.sampling", problem,
                    f"sampling entries: {', '.join(f'{k} ({s.name})' for k, s in table.items()) or '(none)'}; "
                    "add e.g. `sampling: {recognizer: {name: modality-level, params: {k: 3..10}}}`"))
    for i, p in enumerate(params.get("perturbations") or []):
        if p not in (getattr(recipe, "perturbations", {}) or {}):
            out.append((f"params.perturbations[{i}]", f"no perturbation entry named {p!r}",
                        f"entries: {', '.join(recipe.perturbations) or '(none)'}"))
    modes = params.get("modes")
    if isinstance(modes, str):
        modes = [modes]
    for m in modes or []:
        if m not in MODES:
            out.append(("params.modes", f"unknown mode {m!r}", "modes: isolation, composite"))
    if modes is not None and not modes:
        out.append(("params.modes", "no mode given", "modes: [isolation] and/or composite"))
    if params.get("k") is not None:
        try:
            parse_k(params["k"])
        except FusionkitError as err:
            out.append(("params.k", err.message, "e.g. k: [3, 5, 10] or k: 3..10"))
    repeats = params.get("n_repeats", 1)
    if not isinstance(repeats, int) or repeats < 1:
        out.append(("params.n_repeats", f"n_repeats must be a positive integer, got {repeats!r}", ""))
    loss = params.get("loss", "mse")
    if loss not in LOSSES:
        out.append(("params.loss", f"unknown loss {loss!r}", "loss: mse (paper), mae or bce"))
    mods = set(getattr(recipe, "modalities", {}) or {})
    for key in (params.get("head_weights") or {}):
        if mods and key not in mods and key != CANCER_MODALITY:
            out.append(("params.head_weights", f"head weight for unknown modality {key!r}",
                        f"modalities: {', '.join(sorted(mods))}"))
    shortcut = params.get("shortcut", True)
    if not isinstance(shortcut, bool) and shortcut not in (None, *SHORTCUTS):
        out.append(("params.shortcut", f"unknown shortcut {shortcut!r}",
                    "shortcut: true (affine), homogeneous, or false"))
    if params.get("predict_cancer") and name and table[name].name != "cancer-specific":
        out.append(("params.predict_cancer", "predict_cancer needs cancer-specific sampling",
                    f"sampling entry {name!r} uses {table[name].name!r}"))
    return out
