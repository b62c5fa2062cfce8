"""Signal retention (issue 15, item 5): the late-fusion reference of the patient-level classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from test_patient_tasks import make_arrays, run_recipe


def test_late_fusion_features_use_only_their_own_patients_rows():
    from fusionkit.pool import EmbeddingPool
    from fusionkit_plugins.tasks.patient.late_fusion import patient_means, split_features

    arrays, cancer = make_arrays(n_patients=30)
    pids = np.array(sorted(cancer))
    train, test = pids[:24], pids[24:]
    # drop the text items of one test patient: its text block is zeros and its flag 0
    X, ip = arrays["text"]
    keep = np.array([p != test[0] for p in ip])
    arrays["text"] = (X[keep], [p for p, k in zip(ip, keep) if k])
    pool = EmbeddingPool.from_arrays(arrays, labels={"cancer_type": cancer})
    Ftr, Fte = split_features(pool, train, test)
    d, mods = pool.dim, pool.modalities
    assert Ftr.shape == (24, 3 * d + 3) and Fte.shape == (6, 3 * d + 3)
    for i, p in enumerate(test):  # exactly the mean of the patient's own rows
        for mi, m in enumerate(mods):
            own = np.asarray(arrays[m][0])[np.asarray(arrays[m][1]) == p]
            want = own.mean(axis=0) if len(own) else np.zeros(d)
            np.testing.assert_allclose(Fte[i, mi * d:(mi + 1) * d], want, rtol=1e-5, atol=1e-6)
            assert Fte[i, 3 * d + mi] == float(len(own) > 0)
    # poisoning every training patient's rows leaves the test features unchanged
    poisoned = {m: (np.where(np.isin(np.asarray(ids), train)[:, None], 1e6, X_), ids)
                for m, (X_, ids) in arrays.items()}
    pool2 = EmbeddingPool.from_arrays(poisoned, labels={"cancer_type": cancer})
    np.testing.assert_array_equal(split_features(pool2, train, test)[1], Fte)
    assert np.abs(split_features(pool2, train, test)[0]).max() >= 1e6
    with pytest.raises(Exception, match="patient leak"):
        split_features(pool, train, np.concatenate([test, train[:1]]))
    assert patient_means(pool, test).shape == Fte.shape


def test_classifier_reports_late_fusion_and_retention(tmp_path):
    tasks = """  clf:
    name: classifier
    params: {targets: [cancer_type], n_repeats: 3, grid: {k: [2], repeats: [2]},
             max_epochs: 20, patience: 5, hidden: [32, 16], class_weight: true}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=3.0)
    entry = metrics["clf"]["summary"]["targets"]["cancer_type"]
    for model in ("dense", "logistic"):
        late = entry["late_fusion"][f"late-fusion-{model}"]["macro_f1"]
        assert late["n"] == 3 and 0 < late["mean"] <= 1
        best = entry["models"][model]
        assert math.isfinite(best["retention"]["mean"]) and best["retention"]["n"] == 3
        assert math.isfinite(best["retention"]["ci_low"]) and math.isfinite(best["retention"]["ci_high"])
        assert best["late_fusion_macro_f1"]["mean"] == pytest.approx(late["mean"])
    summary = (out / "clf" / "summary.csv").read_text()
    assert "late-fusion-logistic" in summary and ",retention," in summary
    runs = (out / "clf" / "runs.csv").read_text().splitlines()
    assert "retention" in runs[0].split(",") and len(runs) == 1 + 2 * 3
    rows = metrics["clf"]["paper_comparison"]
    assert any(r["metric"].startswith("signal retention") for r in rows)
    assert "retention" in (out / "report.html").read_text()


def test_retrieval_reports_late_fusion_precision_and_retention(tmp_path):
    tasks = """  ret:
    name: retrieval
    params: {n_repeats: 3, top_k: 5}"""
    out, metrics = run_recipe(tmp_path, tasks, signal=3.0,
                              index="index: {name: faiss-flat, params: {metric: cosine}}")
    r = metrics["ret"]["summary"]
    late = r["late_fusion_precision_at_k"]
    assert late["n"] == 3 and 1 / 3 < late["mean"] <= 1  # chance is 1/3 (three balanced classes)
    assert math.isfinite(r["retention"]["mean"]) and r["retention"]["n"] == 3
    assert r["retention"]["mean"] == pytest.approx(r["precision_at_k"]["mean"] / late["mean"], rel=0.2)
    assert any(row["metric"].startswith("signal retention") for row in metrics["ret"]["paper_comparison"])
    assert "retention" in (out / "ret" / "runs.csv").read_text().splitlines()[0]
