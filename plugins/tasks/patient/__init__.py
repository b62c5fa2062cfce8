"""Built-in fusionkit plugins: patient-level experiments (SPEC 2.3), one module per registered task.

``classifier``  (:mod:`.classifier`) cancer type / molecular subtype / TMB class from patient
                aggregates; dense network (256-128-softmax, torch) and a multinomial logistic
                baseline; patient-disjoint 80/20 split, grid over k x r, n repeats.
``gmm``         (:mod:`.gmm`) Gaussian mixture, one component per class; ARI, NMI, silhouette.
``similarity``  (:mod:`.similarity`) cosine / Euclidean / dot product of intra- vs inter-cancer pairs.
``retrieval``   (:mod:`.retrieval`) vector index of index patients' aggregates, queried by held-out
                patients.

All read patient-level aggregates (r repeats of k draws from one patient's own
embeddings, concatenated) built by a recipe sampling entry of the
``patient-level`` sampler (param ``sampling``), and take ``aggregator: {name,
params}`` to override the recipe's aggregator for their own aggregates, e.g.
``{name: sum, params: {center: true}}`` for distance-based experiments where
the composition of each sum would otherwise dominate the distances.

The plumbing they share — patient-disjoint splits, the leak guard, per-split
aggregates, label handling, availability reports — is in :mod:`.common`; the
drawing is in :mod:`.figures`.
"""
