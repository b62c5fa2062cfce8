"""The safety building blocks on their own: path checks, ids, fingerprints, the run
lock, YAML limits, the pickle-free unit codec and declared constraints."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from fusionkit.constraints import Check, OneOf, Range, check_constraints
from fusionkit.errors import DataError, RecipeError
from fusionkit.fingerprint import Fingerprinter
from fusionkit.ids import check_lengths, cross_modality_report, merge_label_tables, normalise_id, normalise_ids, \
    patient_labels
from fusionkit.runlock import RunLock, RunLockedError, holder
from fusionkit.safety import PathEscapeError, check_name, ensure_inside, safe_component
from fusionkit.unitcodec import CorruptUnitError, UnitCodecError, decode_unit, encode_unit
from fusionkit.yamlsafe import load_yaml_text


# --------------------------------------------------------------------------- paths

@pytest.mark.parametrize("name,expected", [("ok-name_1.2", "ok-name_1.2"), ("../../x", "_._.._x"), ("/abs", "_abs"),
                                           ("..", "_."), ("", "_"), ("a b", "a_b"), (".hidden", "_hidden")])
def test_safe_component_is_one_harmless_component(name, expected):
    out = safe_component(name)
    assert out == expected
    assert "/" not in out and out not in (".", "..") and not out.startswith(".")


def test_safe_component_keeps_long_names_distinct():
    a, b = safe_component("x" * 300 + "a"), safe_component("x" * 300 + "b")
    assert a != b and len(a) <= 100 and len(b) <= 100


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "..", "~root", ".git", "a\\b", "tab\there"])
def test_check_name_refuses_path_like_names(name):
    with pytest.raises(PathEscapeError) as err:
        check_name(name, "tasks.x")
    assert "tasks.x" in str(err.value)


def test_ensure_inside(tmp_path):
    root = tmp_path / "run"
    root.mkdir()
    assert ensure_inside(root, "a/b.json") == (root / "a" / "b.json").resolve()
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(PathEscapeError):
            ensure_inside(root, bad, where="tasks.t")
    (root / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PathEscapeError) as err:
        ensure_inside(root, "link/x.json", where="tasks.t")
    assert "tasks.t" in str(err.value)


# --------------------------------------------------------------------------- ids

@pytest.mark.parametrize("raw", ["TCGA-AB-1234", " tcga-ab-1234 ", "TCGA_AB_1234", "TCGA-AB-1234-01A-11R-A123-07",
                                 "TCGA.AB.1234.01", b"TCGA-AB-1234"])
def test_normalise_id_to_patient_barcode(raw):
    assert normalise_id(raw) == "TCGA-AB-1234"


def test_normalise_ids_reports_changes_and_duplicates():
    ids, rep = normalise_ids(["tcga-ab-1234", "TCGA-AB-1234-01A", "TCGA-AB-9999", "p_1"], source="x.csv")
    assert ids.tolist() == ["TCGA-AB-1234", "TCGA-AB-1234", "TCGA-AB-9999", "P-1"]
    assert rep.changed == 3 and rep.duplicated == 1 and rep.duplicate_examples == ["TCGA-AB-1234"]
    with pytest.raises(DataError) as err:
        normalise_ids(["TCGA-AB-1234", float("nan")], source="x.csv")
    assert "row 1" in str(err.value) and "x.csv" in str(err.value)


def test_conflicting_labels_name_the_ids():
    with pytest.raises(DataError) as err:
        patient_labels(["A", "A", "B"], ["BRCA", "LUAD", "BRCA"], label="cancer_type", source="ids.csv")
    assert "A" in str(err.value) and "BRCA vs LUAD" in str(err.value) and "ids.csv" in str(err.value)
    assert patient_labels(["A", "A"], ["BRCA", "BRCA"], label="c", source="s") == {"A": "BRCA"}
    into = {"c": {"A": "x"}}
    with pytest.raises(DataError):
        merge_label_tables(into, {"c": {"A": "y"}}, source="labels")
    merge_label_tables(into, {"c": {"B": "y", "A": "x"}}, source="labels")
    assert into == {"c": {"A": "x", "B": "y"}}


def test_length_mismatch_and_unmatched():
    with pytest.raises(DataError) as err:
        check_lengths(60, 40, source="paper.h5:rna")
    assert "60" in str(err.value) and "40" in str(err.value)
    rep = cross_modality_report({"rna": ["A", "B"], "text": ["A", "C", "D"]})
    assert rep["rna"]["unmatched"] == 1 and rep["text"]["unmatched"] == 2


# --------------------------------------------------------------------------- fingerprints

def test_fingerprint_sees_every_byte_and_is_cached_by_stat(tmp_path):
    f = tmp_path / "big.bin"
    data = bytearray(os.urandom(3 << 20))
    f.write_bytes(bytes(data))
    fp = Fingerprinter(tmp_path / "fp.json")
    first = fp.fingerprint(f)
    assert fp.fingerprint(f) == first and fp.hashed == 1  # second call from the cache
    fp.save()
    again = Fingerprinter(tmp_path / "fp.json")
    assert again.fingerprint(f) == first and again.hashed == 0  # a new process reuses the file
    st = f.stat()
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert again.fingerprint(f) != first


def test_fingerprint_of_missing_file_names_it(tmp_path):
    with pytest.raises(DataError) as err:
        Fingerprinter().fingerprint(tmp_path / "gone.csv")
    assert "gone.csv" in str(err.value)


# --------------------------------------------------------------------------- run lock

def test_lock_is_exclusive_names_holder_and_is_released(tmp_path):
    with RunLock(tmp_path, recipe="r.yaml"):
        assert holder(tmp_path)["pid"] == os.getpid()
        code = ("import sys; from fusionkit.runlock import RunLock, RunLockedError\n"
                f"try:\n    RunLock({str(tmp_path)!r}).acquire()\nexcept RunLockedError as e:\n"
                "    print(e); sys.exit(7)\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 7 and f"pid {os.getpid()}" in out.stdout
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        pass


def test_lock_of_a_killed_process_is_free(tmp_path):
    code = (f"from fusionkit.runlock import RunLock; import time\nlk = RunLock({str(tmp_path)!r}).acquire()\n"
            "print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()
    proc.kill()
    proc.wait()
    with RunLock(tmp_path):
        assert holder(tmp_path)["pid"] == os.getpid()


def test_stale_lock_file_is_taken_over(tmp_path):
    (tmp_path / ".fusionkit.lock").write_text(json.dumps({"pid": 999999, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert holder(tmp_path)["pid"] == os.getpid()


# --------------------------------------------------------------------------- YAML

def test_yaml_limits():
    bomb = "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9 if i else ["x"] * 9) + "]\n" for i in range(9))
    t0 = time.perf_counter()
    with pytest.raises(RecipeError, match="alias"):
        load_yaml_text(bomb, source="r.yaml")
    assert time.perf_counter() - t0 < 5
    with pytest.raises(RecipeError, match="twice"):
        load_yaml_text("a: 1\na: 2\n", source="r.yaml")
    with pytest.raises(RecipeError, match="r.yaml:1"):
        load_yaml_text("a: !!python/object/apply:os.system ['true']\n", source="r.yaml")
    assert load_yaml_text("x: &x {a: 1}\ny: *x\n") == {"x": {"a": 1}, "y": {"a": 1}}


# --------------------------------------------------------------------------- unit codec

def test_unit_codec_round_trips_exactly():
    value = {"rows": [{"a": np.float32(0.1), "b": 0.1 + 0.2, "c": float("nan"), "d": (1, "x"),
                       "e": np.arange(5, dtype=np.int16), "f": None, "g": True, "h": float("-inf")}],
             3: "int key", "__t__": [1], "s": np.array(["a", "bb"]), "big": 2 ** 70}
    back = decode_unit(encode_unit("k", value), key="k")
    row = back["rows"][0]
    assert type(row["a"]) is np.float32 and row["a"] == np.float32(0.1)
    assert row["b"] == 0.1 + 0.2 and np.isnan(row["c"]) and row["h"] == float("-inf")
    assert row["d"] == (1, "x") and row["e"].dtype == np.int16 and row["g"] is True
    assert back[3] == "int key" and back["__t__"] == [1] and back["s"].tolist() == ["a", "bb"]
    assert back["big"] == 2 ** 70


def test_unit_codec_refuses_what_is_not_data():
    with pytest.raises(UnitCodecError, match="object"):
        encode_unit("k", {"x": object()})
    with pytest.raises(UnitCodecError):
        encode_unit("k", {"x": np.array([{}], dtype=object)})


class _Evil:
    def __reduce__(self):
        return (print, ("EXECUTED",))


def test_unit_codec_detects_corrupt_and_foreign_entries(capsys):
    good = encode_unit("k", {"x": np.arange(3)})
    for bad, why in [(good[:-10], "checksum"), (good[:5], "not a fusionkit"), (b"", "not a fusionkit"),
                     (pickle.dumps(_Evil()), "pickle"), (encode_unit("other", 1), "other")]:
        with pytest.raises(CorruptUnitError, match=why):
            decode_unit(bad, key="k", where="units/k.unit")
    assert "EXECUTED" not in capsys.readouterr().out


# --------------------------------------------------------------------------- constraints

class _Comp:
    constraints = {"n": Range(1, integer=True), "p": Range(0, 1), "m": OneOf("l2", "ip"),
                   "k": Check(lambda v: None if v != "bad" else "is bad")}


def test_constraints_name_the_recipe_path():
    issues = check_constraints(_Comp, {"n": 0, "p": [0.5, 1.5], "m": "l3", "k": "bad"}, kind="task", name="x",
                               where="tasks.t")
    wheres = [i.where for i in issues]
    assert wheres == ["tasks.t.params.n", "tasks.t.params.p", "tasks.t.params.m", "tasks.t.params.k"]
    assert "l2" in issues[2].message
    assert check_constraints(_Comp, {"n": 5, "p": None, "m": "ip", "k": 3}, kind="task", name="x") == []


def test_outputs_get_the_usual_file_mode(tmp_path):
    from fusionkit.store import atomic_write_text

    atomic_write_text(tmp_path / "x.txt", "hi")  # not mkstemp's private 0600
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~mask
