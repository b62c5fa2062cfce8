"""Hostile recipes, bad inputs and faults: each ends in one clear message (exit 1,
or 2 for usage) naming the file, field or key, never a traceback; nothing is
written outside the run folder and nothing from a recipe or a cache runs.

Families: recipes (R), data files (D), caches (C), plugins (P), faults (F),
concurrency (L) and path escapes (E).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from badinputs_support import (assert_clean, base_recipe, files_under, fk, fk_proc, plugin_dir, write_recipe)

# --------------------------------------------------------------------------- R: recipes (validate)


def _set(r, path, value):
    node = r
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return r


def _sampler(**params):
    return lambda r, t: _set(r, ["sampling", "simple", "params"], {"k": "3..5", "n": 40, **params})


def _task(key, spec):
    return lambda r, t: _set(r, ["tasks", key], spec)


RECIPE_CASES = {
    # (mutation, needles)
    "unknown-top-key": (lambda r, t: _set(r, ["sampleing"], {}), ["sampleing", "sampling"]),
    "unknown-encoder": (lambda r, t: _set(r, ["modalities", "rna", "encoder"], "idnetity"),
                        ["modalities.rna.encoder", "identity"]),
    "unknown-param": (_sampler(nn=3), ["sampling.simple.params.nn"]),
    "param-wrong-type": (_sampler(n="many"), ["sampling.simple.params.n"]),
    "k-negative": (_sampler(k=-3), ["sampling.simple.params.k", "-3"]),
    "k-reversed": (_sampler(k="10..3"), ["sampling.simple.params.k", "10..3", "revers"]),
    "k-garbage": (_sampler(k="three"), ["sampling.simple.params.k", "three"]),
    "n-zero": (_sampler(n=0), ["sampling.simple.params.n", ">= 1"]),
    "n-huge-memory": (_sampler(n=10 ** 12), ["sampling.simple", "memory"]),
    "probabilities-above-one": (_sampler(probabilities={"rna": 1.5, "text": 0.2}),
                                ["sampling.simple.params.probabilities", "1.5"]),
    "probabilities-unknown-modality": (_sampler(probabilities={"rnaa": 0.5}),
                                       ["sampling.simple.params.probabilities", "rnaa"]),
    "patient-repeats-zero": (lambda r, t: _set(r, ["sampling", "patients", "params", "repeats"], 0),
                             ["sampling.patients.params.repeats"]),
    "perturbation-fraction": (lambda r, t: _set(r, ["perturbations"], {"p": {
        "name": "gaussian-replace", "params": {"fraction": 1.5}}}), ["perturbations.p.params.fraction"]),
    "perturbation-std-negative": (lambda r, t: _set(r, ["perturbations"], {"p": {
        "name": "gaussian-replace", "params": {"std": -1}}}), ["perturbations.p.params.std"]),
    "width-zero": (lambda r, t: _set(r, ["width"], 0), ["width"]),
    "width-mismatch": (lambda r, t: _set(r, ["modalities", "text", "encoder"], "sbert"),
                       ["modalities.text.encoder", "384", "width is 16"]),
    "adapter-cannot-shrink": (lambda r, t: _set(r, ["modalities", "text"], {"encoder": "sbert", "adapter": "zero-pad"}),
                              ["modalities.text.adapter", "zero-pad"]),
    "vae-epochs-negative": (lambda r, t: _set(r, ["modalities", "rna", "encoder"], {
        "name": "rna-vae", "params": {"epochs": -1, "latent_dim": 16}}), ["modalities.rna.encoder.params.epochs"]),
    "top-k-zero": (_task("ret", {"name": "retrieval", "params": {"sampling": "patients", "top_k": 0}}),
                   ["tasks.ret.params.top_k"]),
    "repeats-negative": (_task("rec", {"name": "recognizer-baseline", "params": {"sampling": "simple", "n_repeats": -2}}),
                         ["tasks.rec.params.n_repeats"]),
    "test-fraction-above-one": (_task("cls", {"name": "classifier", "params": {"sampling": "patients",
                                                                               "test_fraction": 1.5}}),
                                ["tasks.cls.params.test_fraction"]),
    "task-unknown-sampling": (_task("rec", {"name": "recognizer-baseline", "params": {"sampling": "simpel"}}),
                              ["tasks.rec", "simpel"]),
    "workers-zero": (lambda r, t: _set(r, ["executor"], {"name": "local", "params": {"workers": 0}}),
                     ["executor.params.workers"]),
    "executor-unknown": (lambda r, t: _set(r, ["executor"], "spark"), ["executor.name", "spark"]),
    "schema-future": (lambda r, t: _set(r, ["schema"], 2), ["schema", "2"]),
    "seed-string": (lambda r, t: _set(r, ["seed"], "abc"), ["seed", "abc"]),
    "unknown-variable": (lambda r, t: _set(r, ["name"], "${nope}"), ["nope", "vars"]),
    "variable-cycle": (lambda r, t: _set(_set(r, ["vars"], {"a": "${b}", "b": "${a}"}), ["name"], "${a}"),
                       ["vars", "cycle"]),
    "input-file-missing": (lambda r, t: _set(r, ["data", "reader", "params", "inputs", "rna", "path"], "data/nope.npy"),
                           ["nope.npy", "data.reader"]),
    "root-missing": (lambda r, t: _set(r, ["data", "reader"], {"name": "tcga-folder", "params": {"root": "no/such/root"}}),
                     ["no/such/root"]),
    "modality-not-mapping": (lambda r, t: _set(r, ["modalities", "rna"], [1, 2]), ["modalities.rna"]),
    "labels-not-list": (lambda r, t: _set(r, ["labels"], "tcga-labels"), ["labels"]),
    "output-unknown-key": (lambda r, t: _set(r, ["output"], {"dri": "x"}), ["output.dri", "dir"]),
    "no-modalities": (lambda r, t: _set(r, ["modalities"], {}), ["modalities"]),
}


@pytest.mark.parametrize("case", sorted(RECIPE_CASES))
def test_recipe_problem_is_one_message(tmp_path, case):
    mutate, needles = RECIPE_CASES[case]
    recipe = write_recipe(tmp_path, mutate(base_recipe(tmp_path), tmp_path))
    code, out = fk("validate", str(recipe))
    assert_clean(code, out, 1, str(recipe), *needles)
    assert not (tmp_path / "runs").exists()


def test_validate_json_lists_every_problem(tmp_path):
    r = base_recipe(tmp_path)
    _sampler(n=0, k="10..3")(r, tmp_path)
    _set(r, ["seed"], "x")
    code, out = fk("validate", str(write_recipe(tmp_path, r)), "--json")
    assert code == 1 and "Traceback" not in out
    doc = json.loads(out)
    wheres = " ".join(e["where"] for e in doc["errors"])
    assert "sampling.simple.params.n" in wheres and "sampling.simple.params.k" in wheres and "seed" in wheres


def test_variable_referring_to_another_variable_is_resolved(tmp_path):
    r = _set(base_recipe(tmp_path), ["vars"], {"data": "data", "rna": "${data}/rna.npy"})
    _set(r, ["data", "reader", "params", "inputs", "rna", "path"], "${rna}")
    code, out = fk("validate", str(write_recipe(tmp_path, r)), "--json")
    assert code == 0, out
    resolved = json.loads(out)["recipe"]["modalities"]["rna"]["reader"]["params"]["inputs"]["rna"]["path"]
    assert resolved == str((tmp_path / "data" / "rna.npy").resolve())


def test_workers_above_cores_are_capped(tmp_path):
    r = _set(base_recipe(tmp_path), ["executor"], {"name": "local", "params": {"workers": 100000}})
    recipe = write_recipe(tmp_path, r)
    code, out = fk("run", str(recipe), "--out", str(tmp_path / "out"), "--no-progress")
    assert_clean(code, out, 0, "workers", "100000", "core")
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["status"] == "ok" and run["workers"] <= (os.cpu_count() or 1)


# --------------------------------------------------------------------------- R: recipe files

def _raw(tmp_path, text: str | bytes) -> Path:
    path = tmp_path / "recipe.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


BOMB = "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9 if i else ["x"] * 9) + "]\n" for i in range(9))

FILE_CASES = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["binary"]),
    "not-utf8": (b"name: caf\xe9\nschema: 1\n", ["UTF-8"]),
    "malformed-yaml": ("name: x\nmodalities:\n  rna: {encoder: identity\n", ["malformed YAML", ":"]),
    "top-level-list": ("- a\n- b\n", ["mapping"]),
    "alias-bomb": (BOMB, ["alias"]),
    "recursive-alias": ("a: &a [*a]\n", ["alias"]),
    "duplicate-key": ("name: x\nseed: 1\nseed: 2\n", ["seed", "twice"]),
    "python-tag": ("name: !!python/object/apply:os.system ['touch {marker}']\n", ["tag"]),
    "empty": ("", ["modalit"]),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_recipe_file_problem_is_one_message(tmp_path, case):
    text, needles = FILE_CASES[case]
    marker = tmp_path / "EXECUTED"
    if isinstance(text, str):
        text = text.replace("{marker}", str(marker))
    path = _raw(tmp_path, text)
    t0 = time.perf_counter()
    code, out = fk("validate", str(path))
    assert_clean(code, out, 1, str(path), *needles)
    assert time.perf_counter() - t0 < 30  # an alias bomb must not hang
    assert not marker.exists()


def test_recipe_that_is_a_folder_or_missing(tmp_path):
    code, out = fk("validate", str(tmp_path))
    assert_clean(code, out, 2, str(tmp_path.name))
    code, out = fk("validate", str(tmp_path / "nope.yaml"))
    assert_clean(code, out, 1, "nope.yaml", "not found")


def test_set_without_equals_is_one_message(tmp_path):
    recipe = write_recipe(tmp_path, base_recipe(tmp_path))
    code, out = fk("validate", str(recipe), "--set", "seed")
    assert_clean(code, out, 1, "--set", "seed", "key.path=value")


def test_set_into_a_scalar_is_one_message(tmp_path):
    recipe = write_recipe(tmp_path, base_recipe(tmp_path))
    code, out = fk("validate", str(recipe), "--set", "seed.x=1")
    assert_clean(code, out, 1, "seed.x=1", "not a mapping")


def test_unknown_option_is_usage_exit_2(tmp_path):
    recipe = write_recipe(tmp_path, base_recipe(tmp_path))
    code, out = fk("run", str(recipe), "--outt", "x")
    assert_clean(code, out, 2, "--outt")


# --------------------------------------------------------------------------- E: path escapes

ESCAPE_NAMES = {
    "task-dotdot": (["tasks"], "../../../X"),
    "task-absolute": (["tasks"], "/tmp/fk_escape_abs"),
    "task-slash": (["tasks"], "a/b"),
    "sampling-dotdot": (["sampling"], "../up"),
    "modality-dotdot": (["modalities"], ".."),
    "perturbation-home": (["perturbations"], "~root"),
}


@pytest.mark.parametrize("case", sorted(ESCAPE_NAMES))
def test_key_that_would_leave_the_run_folder_is_refused(tmp_path, case):
    section, key = ESCAPE_NAMES[case]
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    r = base_recipe(work)
    if section == ["tasks"]:
        r["tasks"] = {key: {"name": "probe", "params": {"units": 1}}}
    elif section == ["sampling"]:
        r["sampling"][key] = r["sampling"].pop("simple")
    elif section == ["modalities"]:
        r["modalities"][key] = r["modalities"].pop("text")
    else:
        r["perturbations"] = {key: {"name": "gaussian-replace"}}
    recipe = write_recipe(work, r)
    before = files_under(tmp_path)
    out_dir = work / "out"
    code, out = fk("--plugins-dir", str(plugin_dir(work)), "run", str(recipe), "--out", str(out_dir), "--no-progress")
    assert_clean(code, out, 1, f"{section[0]}.{key}", "run folder")
    after = files_under(tmp_path) - before
    allowed = (str((work / "plugs").relative_to(tmp_path)), str(out_dir.relative_to(tmp_path)))
    assert all(p.startswith(allowed) for p in after), after
    assert not Path("/tmp/fk_escape_abs").exists()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/fk_escape_name", "..", "a/../../b"])
def test_recipe_name_that_is_a_path_is_refused(tmp_path, name, monkeypatch):
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    r = _set(base_recipe(work), ["name"], name)
    code, out = fk("run", str(write_recipe(work, r)), "--no-progress")
    assert_clean(code, out, 1, "name", "run folder")
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/fk_escape_name").exists()
    assert not (work / "runs").exists()


@pytest.mark.parametrize("target", ["../outside.json", "/tmp/fk_escape_write.json", "sub/../../outside2.json"])
def test_plugin_write_outside_the_run_folder_is_refused(tmp_path, target):
    r = _set(base_recipe(tmp_path), ["tasks"], {"probe": {"name": "probe", "params": {"write": target}}})
    out_dir = tmp_path / "out"
    code, out = fk("--plugins-dir", str(plugin_dir(tmp_path)), "run", str(write_recipe(tmp_path, r)),
                   "--out", str(out_dir), "--no-progress")
    assert_clean(code, out, 1, "tasks.probe", "outside")
    assert not (tmp_path / "outside.json").exists() and not (tmp_path / "outside2.json").exists()
    assert not Path("/tmp/fk_escape_write.json").exists()


def test_symlink_planted_in_run_folder_is_not_followed(tmp_path):
    r = _set(base_recipe(tmp_path), ["tasks"], {"probe": {"name": "probe", "params": {"units": 1}}})
    out_dir = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out_dir.mkdir()
    (out_dir / "probe").symlink_to(elsewhere, target_is_directory=True)
    code, out = fk("--plugins-dir", str(plugin_dir(tmp_path)), "run", str(write_recipe(tmp_path, r)),
                   "--out", str(out_dir), "--no-progress")
    assert_clean(code, out, 1, "tasks.probe", "outside")
    assert list(elsewhere.iterdir()) == []


def test_odd_but_harmless_keys_stay_inside(tmp_path):
    r = base_recipe(tmp_path)
    r["sampling"]["two words"] = r["sampling"].pop("simple")
    out_dir = tmp_path / "out"
    code, out = fk("run", str(write_recipe(tmp_path, r)), "--out", str(out_dir), "--no-progress")
    assert_clean(code, out, 0)
    assert (out_dir / "aggregates" / "two_words" / "X.npy").exists()


# --------------------------------------------------------------------------- D: data files

def _run(tmp_path, r, *extra, plugins=False):
    args = (["--plugins-dir", str(plugin_dir(tmp_path))] if plugins else []) + [
        "run", str(write_recipe(tmp_path, r)), "--out", str(tmp_path / "out"), "--no-progress", *extra]
    return fk(*args)


def _npy_text(tmp):
    (tmp / "data" / "rna.npy").write_text("this is not a numpy file\n")


def _npy_truncated(tmp):
    data = (tmp / "data" / "rna.npy").read_bytes()
    (tmp / "data" / "rna.npy").write_bytes(data[: len(data) // 2])


def _npy_1d(tmp):
    np.save(tmp / "data" / "rna.npy", np.zeros(60, dtype=np.float32))


def _npy_nan(tmp):
    X = np.load(tmp / "data" / "rna.npy")
    X[3, 2] = np.nan
    np.save(tmp / "data" / "rna.npy", X)


def _npy_pickle(tmp):
    arr = np.empty(60, dtype=object)
    arr[:] = [{"x": i} for i in range(60)]
    np.save(tmp / "data" / "rna.npy", arr, allow_pickle=True)


def _npy_int_header(tmp):
    (tmp / "data" / "rna.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'}\n")


def _ids_short(tmp):
    p = tmp / "data" / "rna_ids.csv"
    p.write_text("\n".join(p.read_text().splitlines()[:41]) + "\n")


def _ids_no_column(tmp):
    p = tmp / "data" / "rna_ids.csv"
    p.write_text(p.read_text().replace("patient_id", "who", 1))


def _ids_binary(tmp):
    (tmp / "data" / "rna_ids.csv").write_bytes(bytes(range(256)) * 4)


def _ids_empty(tmp):
    (tmp / "data" / "rna_ids.csv").write_text("")


def _ids_blank_id(tmp):
    p = tmp / "data" / "rna_ids.csv"
    lines = p.read_text().splitlines()
    lines[5] = "," + lines[5].split(",", 1)[1]
    p.write_text("\n".join(lines) + "\n")


def _ids_conflicting_labels(tmp):
    p = tmp / "data" / "rna_ids.csv"
    lines = p.read_text().splitlines()
    # row 1 is TCGA-AA-0000 (BRCA); add a second row for it with another cancer and a vector
    lines.append("TCGA-AA-0000,LUAD")
    p.write_text("\n".join(lines) + "\n")
    X = np.load(tmp / "data" / "rna.npy")
    np.save(tmp / "data" / "rna.npy", np.vstack([X, X[:1]]))


DATA_CASES = {
    "npy-is-text": (_npy_text, ["rna.npy"]),
    "npy-truncated": (_npy_truncated, ["rna.npy"]),
    "npy-1d": (_npy_1d, ["rna.npy", "2-D"]),
    "npy-nan": (_npy_nan, ["rna.npy", "NaN"]),
    "npy-object-pickle": (_npy_pickle, ["rna.npy"]),
    "npy-bad-header": (_npy_int_header, ["rna.npy"]),
    "ids-fewer-than-vectors": (_ids_short, ["rna_ids.csv", "40", "60"]),
    "ids-column-missing": (_ids_no_column, ["rna_ids.csv", "patient_id"]),
    "ids-binary": (_ids_binary, ["rna_ids.csv"]),
    "ids-empty-file": (_ids_empty, ["rna_ids.csv"]),
    "ids-blank-id": (_ids_blank_id, ["rna_ids.csv", "row"]),
    "ids-conflicting-labels": (_ids_conflicting_labels, ["TCGA-AA-0000", "BRCA", "LUAD"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_file_is_one_message(tmp_path, case):
    damage, needles = DATA_CASES[case]
    r = base_recipe(tmp_path)
    damage(tmp_path)
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 1, *needles)
    state = json.loads((tmp_path / "out" / "run.json").read_text())
    assert state["status"] == "failed" and state["error"]


def _h5(tmp_path, n_vec=60, n_ids=40, *, group="rna", drop=None):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data" / "paper.h5"
    path.parent.mkdir(exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group(group)
        g["embeddings"] = np.random.default_rng(0).normal(size=(n_vec, 16)).astype(np.float32)
        g["submitter_id"] = np.array([f"TCGA-AA-{i:04d}".encode() for i in range(n_ids)])
        g["cancer"] = np.array([b"BRCA"] * n_ids)
        if drop:
            del g[drop]
    return path


def _h5_recipe(tmp_path, path):
    r = base_recipe(tmp_path)
    r["data"]["reader"]["params"] = {"h5_files": [str(path)]}
    r["modalities"] = {"rna": {"encoder": "identity"}}
    r["sampling"] = {"simple": {"name": "modality-level", "params": {"k": 2, "n": 20}}}
    return r


def test_hdf5_with_more_embeddings_than_ids_is_an_error(tmp_path):
    path = _h5(tmp_path, 60, 40)
    code, out = _run(tmp_path, _h5_recipe(tmp_path, path))
    assert_clean(code, out, 1, "paper.h5", "rna", "60", "40")


def test_hdf5_without_ids_is_an_error(tmp_path):
    path = _h5(tmp_path, 60, 60, drop="submitter_id")
    code, out = _run(tmp_path, _h5_recipe(tmp_path, path))
    assert_clean(code, out, 1, "paper.h5", "submitter_id")


def test_malformed_hdf5_is_an_error(tmp_path):
    base_recipe(tmp_path)
    path = tmp_path / "data" / "paper.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    code, out = _run(tmp_path, _h5_recipe(tmp_path, path))
    assert_clean(code, out, 1, "paper.h5")


def _maf_recipe(tmp_path, path):
    r = base_recipe(tmp_path)
    r["modalities"]["mutation"] = {"reader": {"name": "maf", "params": {"paths": str(path)}},
                                   "encoder": {"name": "mutation-vae", "params": {"latent_dim": 16, "epochs": 1}}}
    return r


MAF = ("Hugo_Symbol\tVariant_Classification\tTumor_Sample_Barcode\n"
       + "".join(f"G{i % 7}\tMissense_Mutation\tTCGA-AA-{i % 30:04d}-01A\n" for i in range(400)))


@pytest.mark.parametrize("case", ["truncated-gz", "not-gzip", "empty", "no-header-columns"])
def test_bad_maf_is_one_message(tmp_path, case):
    base_recipe(tmp_path)
    path = tmp_path / "data" / "muts.maf.gz"
    if case == "truncated-gz":
        path.write_bytes(gzip.compress(MAF.encode())[:300])
    elif case == "not-gzip":
        path.write_text(MAF)
    elif case == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(gzip.compress(b"a\tb\n1\t2\n"))
    code, out = fk("validate", str(write_recipe(tmp_path, _maf_recipe(tmp_path, path))))
    assert code == 0, out  # the file exists: validate reads no content
    code, out = _run(tmp_path, _maf_recipe(tmp_path, path))
    assert_clean(code, out, 1, "muts.maf.gz")
    assert "Aborted" not in out


def test_messy_ids_are_normalised_and_linked(tmp_path):
    r = base_recipe(tmp_path)
    p = tmp_path / "data" / "text_ids.csv"
    lines = p.read_text().splitlines()
    messy = [lines[0]]
    for i, line in enumerate(lines[1:]):
        pid, rest = line.split(",", 1)
        pid = [pid.lower(), pid.replace("-", "_"), f"  {pid}  ", f"{pid}-01A-11R"][i % 4]
        messy.append(f"{pid},{rest}")
    p.write_text("\n".join(messy) + "\n")
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 0)
    summary = json.loads((tmp_path / "out" / "data_summary.json").read_text())
    ids = summary["ids"]
    text = next(v for k, v in ids.items() if "text" in k)
    assert text["changed"] == 120 and text["unmatched"] == 0
    assert summary["modalities"]["text"]["patients"] == 60


# --------------------------------------------------------------------------- C: caches

def _probe_recipe(tmp_path, **params):
    r = base_recipe(tmp_path)
    r["tasks"] = {"probe": {"name": "probe", "params": {"units": 3, **params}}}
    return r


def _unit_files(out_dir):
    return sorted((out_dir / "cache" / "units").rglob("*.unit"))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_in_cache_never_runs(tmp_path):
    r = _probe_recipe(tmp_path)
    code, out = _run(tmp_path, r, plugins=True)
    assert code == 0, out
    out_dir = tmp_path / "out"
    before = json.loads((out_dir / "metrics.json").read_text())["probe"]["summary"]["values"]
    marker = tmp_path / "EXECUTED"
    files = _unit_files(out_dir)
    assert len(files) == 3
    for f in files:
        f.write_bytes(pickle.dumps(_Evil(str(marker))))
        f.with_suffix(".pkl").write_bytes(pickle.dumps(_Evil(str(marker))))
    outside_before = files_under(tmp_path) - {p for p in files_under(tmp_path) if p.startswith("out")}
    code, out = _run(tmp_path, r, plugins=True)
    assert_clean(code, out, 0, "corrupt cache entry", files[0].name)
    assert not marker.exists()  # nothing executed
    assert {p for p in files_under(tmp_path) if not p.startswith("out")} == outside_before  # nothing written outside
    assert json.loads((out_dir / "metrics.json").read_text())["probe"]["summary"]["values"] == before
    assert all(f.read_bytes().startswith(b"FKUNIT") for f in files)  # recomputed as data


@pytest.mark.parametrize("damage", ["truncate", "flip-byte", "foreign", "empty"])
def test_corrupt_unit_cache_entry_is_named_discarded_and_recomputed(tmp_path, damage):
    r = _probe_recipe(tmp_path)
    assert _run(tmp_path, r, plugins=True)[0] == 0
    out_dir = tmp_path / "out"
    before = (out_dir / "probe" / "values.json").read_text()
    files = _unit_files(out_dir)
    target = files[1]
    data = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(data[:-20])
    elif damage == "flip-byte":
        target.write_bytes(data[:-30] + bytes([data[-30] ^ 0xFF]) + data[-29:])
    elif damage == "foreign":
        target.write_bytes(files[0].read_bytes())
    else:
        target.write_bytes(b"")
    code, out = _run(tmp_path, r, plugins=True)
    assert_clean(code, out, 0, target.name)
    assert (out_dir / "probe" / "values.json").read_text() == before
    assert target.read_bytes() != b"" and target.read_bytes()[:6] == b"FKUNIT"


def test_unit_result_that_is_not_data_is_one_message(tmp_path):
    code, out = _run(tmp_path, _probe_recipe(tmp_path, kind="object"), plugins=True)
    assert_clean(code, out, 1, "probe", "object")


def _store_files(out_dir, pattern):
    return sorted((out_dir / "cache" / "stores").rglob(pattern))


@pytest.mark.parametrize("damage", ["meta-garbage", "embeddings-truncated", "items-missing", "shard-truncated"])
def test_corrupt_store_is_rebuilt(tmp_path, damage):
    r = base_recipe(tmp_path)
    assert _run(tmp_path, r)[0] == 0
    out_dir = tmp_path / "out"
    X0 = np.load(out_dir / "aggregates" / "simple" / "X.npy")
    if damage == "meta-garbage":
        _store_files(out_dir, "meta.json")[0].write_text("{not json")
    elif damage == "embeddings-truncated":
        f = _store_files(out_dir, "embeddings.*.npy")[0]
        f.write_bytes(f.read_bytes()[:100])
    elif damage == "items-missing":
        _store_files(out_dir, "items.*.npz")[0].unlink()
    else:
        for f in _store_files(out_dir, "meta.json"):
            f.unlink()
        shards = sorted((out_dir / "cache" / "work").rglob("shard-*.npy"))
        assert shards
        shards[0].write_bytes(shards[0].read_bytes()[:64])
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 0)
    assert np.array_equal(np.load(out_dir / "aggregates" / "simple" / "X.npy"), X0)


def test_corrupt_fingerprint_cache_is_ignored(tmp_path):
    r = base_recipe(tmp_path)
    assert _run(tmp_path, r)[0] == 0
    fp = tmp_path / "out" / "cache" / "fingerprints.json"
    assert fp.exists()
    fp.write_text("[[[")
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 0)
    assert json.loads(fp.read_text())["format"] == 1


def test_edit_in_the_middle_of_an_input_is_seen(tmp_path):
    r = base_recipe(tmp_path)
    assert _run(tmp_path, r)[0] == 0
    X0 = np.load(tmp_path / "out" / "aggregates" / "simple" / "X.npy")
    f = tmp_path / "data" / "rna.npy"
    X = np.load(f)
    X[30] += 1.0  # same size, a change in the middle of the file
    st = f.stat()
    np.save(f, X)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 0)
    assert not np.array_equal(np.load(tmp_path / "out" / "aggregates" / "simple" / "X.npy"), X0)


def test_cache_folder_that_is_a_file(tmp_path):
    (tmp_path / "cachefile").write_text("x")
    code, out = _run(tmp_path, base_recipe(tmp_path), "--cache", str(tmp_path / "cachefile"))
    assert_clean(code, out, 2, "cachefile", "is a file")
    r = _set(base_recipe(tmp_path), ["output"], {"cache": str(tmp_path / "cachefile")})
    code, out = _run(tmp_path, r)
    assert_clean(code, out, 1, "cachefile")


# --------------------------------------------------------------------------- P: plugins

def test_plugin_calling_sys_exit_at_import_is_contained(tmp_path):
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "quitter.py").write_text("import sys\nsys.exit(3)\n")
    code, out = fk("--plugins-dir", str(plugs), "list", "aggregators")
    assert_clean(code, out, 0, "sum")
    code, out = fk("--plugins-dir", str(plugs), "plugins")
    assert_clean(code, out, 0, "dir.quitter", "broken", "SystemExit")


def test_plugin_failing_at_import_does_not_stop_a_recipe_that_does_not_need_it(tmp_path):
    plugs = tmp_path / "plugs"
    plugs.mkdir()
    (plugs / "kaput.py").write_text("raise ImportError('kaput dependency missing')\n")
    code, out = fk("--plugins-dir", str(plugs), "validate", str(write_recipe(tmp_path, base_recipe(tmp_path))))
    assert_clean(code, out, 0, "ok")


def test_plugins_dir_missing(tmp_path):
    code, out = fk("--plugins-dir", str(tmp_path / "nope"), "list", "encoders")
    assert_clean(code, out, 1, "nope")


def test_plugin_constructor_error_names_task(tmp_path):
    r = _set(base_recipe(tmp_path), ["tasks"], {"bt": {"name": "broken-task"}})
    code, out = _run(tmp_path, r, plugins=True)
    assert_clean(code, out, 1, "tasks.bt", "broken-task", "constructor of the broken test task")


def test_plugin_bug_is_one_message_and_traceback_only_with_vv(tmp_path):
    r = _set(base_recipe(tmp_path), ["tasks"], {"bug": {"name": "buggy-task"}})
    code, out = _run(tmp_path, r, plugins=True)
    assert_clean(code, out, 1, "tasks.bug", "KeyError", "-vv")
    recipe = tmp_path / "recipe.yaml"
    code, out = fk("-vv", "--plugins-dir", str(plugin_dir(tmp_path)), "run", str(recipe), "--out",
                   str(tmp_path / "out"), "--no-progress")
    assert code == 1 and "Traceback" in out and "KeyError" in out


# --------------------------------------------------------------------------- F: faults

def test_out_under_a_file_is_one_message(tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out = _run(tmp_path, base_recipe(tmp_path), "--out", str(tmp_path / "afile" / "out"))
    assert_clean(code, out, 1, "afile")


def test_disk_full_is_one_message(tmp_path, monkeypatch):
    import errno

    from fusionkit import store

    real = os.fsync
    calls = {"n": 0}

    def full(fd):
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(store.os, "fsync", full)
    code, out = _run(tmp_path, base_recipe(tmp_path))
    assert_clean(code, out, 1, "No space left on device", str(tmp_path / "out"))


def test_memory_error_is_one_message(tmp_path, monkeypatch):
    from fusionkit import pool

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(pool, "aggregate", boom)
    import fusionkit.context as context

    monkeypatch.setattr(context, "aggregate", boom, raising=False)
    code, out = _run(tmp_path, base_recipe(tmp_path))
    assert_clean(code, out, 1, "memory")


def test_failed_rerun_is_refused_by_results(tmp_path):
    r = _probe_recipe(tmp_path)
    code, out = _run(tmp_path, r, plugins=True)
    assert code == 0, out
    out_dir = tmp_path / "out"
    code, out = fk("results", str(out_dir))
    assert code == 0, out
    r["tasks"]["probe"]["params"]["fail"] = True
    code, out = _run(tmp_path, r, plugins=True)
    assert_clean(code, out, 1, "probe task failed on purpose", "tasks.probe")
    state = json.loads((out_dir / "run.json").read_text())
    assert state["status"] == "failed" and "probe task failed" in state["error"]
    assert not (out_dir / "report.html").exists()
    code, out = fk("results", str(out_dir))
    assert_clean(code, out, 1, str(out_dir), "failed")


def test_results_refuses_a_folder_that_is_not_a_run(tmp_path):
    code, out = fk("results", str(tmp_path))
    assert_clean(code, out, 1, "run.json")


def test_results_refuses_an_interrupted_run(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "run.json").write_text(json.dumps({"status": "running", "pid": 999999}))
    (out_dir / "metrics.json").write_text("{}")
    (out_dir / "data_summary.json").write_text("{}")
    code, out = fk("results", str(out_dir))
    assert_clean(code, out, 1, "interrupted")


def test_query_refuses_an_index_of_a_failed_run(tmp_path):
    index_dir = tmp_path / "out" / "ret" / "index"
    index_dir.mkdir(parents=True)
    (tmp_path / "out" / "run.json").write_text(json.dumps({"status": "failed", "error": "boom"}))
    (index_dir / "meta.json").write_text("{}")
    code, out = fk("query", str(index_dir), "--patient", "TCGA-AA-0001")
    assert_clean(code, out, 1, "failed")


def test_query_on_a_corrupt_index_is_one_message(tmp_path):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    (index_dir / "meta.json").write_text("{broken")
    code, out = fk("query", str(index_dir), "--patient", "TCGA-AA-0001")
    assert_clean(code, out, 1, "meta.json")


def test_query_vector_file_that_is_not_npy(tmp_path):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    vec = tmp_path / "q.npy"
    vec.write_text("nope")
    code, out = fk("query", str(index_dir), "--vector-file", str(vec))
    assert_clean(code, out, 1, "q.npy")


def test_killed_run_is_refused_by_results_then_resumes(tmp_path):
    r = _probe_recipe(tmp_path, sleep=30)
    recipe = write_recipe(tmp_path, r)
    out_dir = tmp_path / "out"
    proc = fk_proc("--plugins-dir", str(plugin_dir(tmp_path)), "run", str(recipe), "--out", str(out_dir),
                   "--no-progress", background=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out_dir / "aggregates" / "patients").exists():
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    code, out = fk("results", str(out_dir))
    assert_clean(code, out, 1, "interrupted")
    r["tasks"]["probe"]["params"]["sleep"] = 0
    code, out = _run(tmp_path, r, plugins=True)
    assert code == 0, out
    assert fk("results", str(out_dir))[0] == 0


# --------------------------------------------------------------------------- L: concurrency

def test_two_runs_into_one_folder(tmp_path):
    plugs = plugin_dir(tmp_path)
    slow = _probe_recipe(tmp_path, sleep=6)
    other = _probe_recipe(tmp_path, units=5)
    other["name"] = "other"
    slow_path = write_recipe(tmp_path, slow, "slow.yaml")
    other_path = write_recipe(tmp_path, other, "other.yaml")
    out_dir = tmp_path / "out"
    first = fk_proc("--plugins-dir", str(plugs), "run", str(slow_path), "--out", str(out_dir), "--no-progress",
                    background=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out_dir / ".fusionkit.lock").exists():
            time.sleep(0.05)
        time.sleep(0.3)
        t0 = time.time()
        second = fk_proc("--plugins-dir", str(plugs), "run", str(other_path), "--out", str(out_dir), "--no-progress")
        fast = time.time() - t0
        first_out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, 9)
    out2 = second.stdout + second.stderr
    assert_clean(second.returncode, out2, 1, "locked", str(first.pid), str(out_dir))
    assert fast < 60
    assert first.returncode == 0, first_out
    run = json.loads((out_dir / "run.json").read_text())
    assert run["status"] == "ok" and run["name"] == "bad"
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["probe"]["summary"]["n"] == 3
    assert "other" not in (out_dir / "resolved_recipe.yaml").read_text().split("name:")[1].split("\n")[0]
    assert fk("results", str(out_dir))[0] == 0
    assert not (out_dir / ".fusionkit.lock").exists()


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    import socket

    (out_dir / ".fusionkit.lock").write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))
    code, out = _run(tmp_path, base_recipe(tmp_path))
    assert_clean(code, out, 0)


def test_lock_held_by_another_process_blocks_a_run(tmp_path):
    import subprocess
    import sys

    out_dir = tmp_path / "out"
    code = (f"from fusionkit.runlock import RunLock; import time\nlk = RunLock({str(out_dir)!r}).acquire()\n"
            "print('held', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out = _run(tmp_path, base_recipe(tmp_path))
        assert_clean(code, out, 1, "locked", f"pid {holder.pid}", str(out_dir))
    finally:
        holder.kill()
        holder.wait()
    assert not (out_dir / "run.json").exists() and not (out_dir / "run.log").exists()


def test_two_recipes_share_a_cache_safely(tmp_path):
    r = base_recipe(tmp_path)
    cache = tmp_path / "shared-cache"
    code, out = _run(tmp_path, r, "--cache", str(cache))
    assert code == 0, out
    X0 = np.load(tmp_path / "out" / "aggregates" / "simple" / "X.npy")
    shutil.rmtree(tmp_path / "out")
    code, out = _run(tmp_path, r, "--cache", str(cache))
    assert_clean(code, out, 0)
    assert np.array_equal(np.load(tmp_path / "out" / "aggregates" / "simple" / "X.npy"), X0)


def test_column_hints_name_only_parameters_the_reader_has(tmp_path):
    from fusionkit import DataError
    from fusionkit_plugins.readers.common import load_cancer_map

    table = tmp_path / "patients.csv"
    table.write_text("who,cancer_type\nTCGA-AA-0001,BRCA\n")
    with pytest.raises(DataError) as err:
        load_cancer_map(str(table))
    assert "patients.csv" in str(err.value) and "who" in str(err.value)
    assert "_column" not in err.value.hint and "'patient_id'" in err.value.hint
