"""Built-in fusionkit plugin: the ``survival`` task (issue 12; SPEC 2.6) on patient-level aggregates.

``task``      (:mod:`.task`) registers ``survival``: cohort, patient-disjoint splits, cached units
``unit``      (:mod:`.unit`) one repeat at one grid point: feature sets, fits, evaluation
``models``    (:mod:`.models`) Coxnet (scikit-survival) with per-stratum handling, the deep Cox
              fit, per-stratum Breslow baseline hazards, feature preparation (PCA)
``cox``       (:mod:`.cox`) the deep Cox loss (negative partial log-likelihood, Breslow ties,
              strata) in torch, and its trainer: the one piece written by hand
``metrics``   (:mod:`.metrics`) Harrell's / stratified / Uno's c-index, time-dependent AUC,
              integrated Brier score, Kaplan-Meier, log-rank: scikit-survival
``evaluate``  (:mod:`.evaluate`) every metric of one model on one test set, pan-cancer and per cancer
``report``, ``summary`` tables, CIs over repeats, paired differences, KM risk groups, results rows
``figures``   (:mod:`.figures`) Kaplan-Meier per cancer, c-index per cancer; the k x r heatmap

The patient-level plumbing (splits, leak guard, per-split aggregates) is the classifier's:
:mod:`fusionkit_plugins.tasks.patient.common`.
"""
