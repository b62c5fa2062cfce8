"""Built-in readers, one module per input family; each module registers the readers named here.

``rna``: ``rna-table``, ``gdc-star-counts`` · ``maf``: ``maf`` · ``text``: ``report-text`` ·
``clinical``: ``clinical-sentences`` · ``image``: ``tiles``, ``wsi`` · ``tcga``: ``tcga-labels``,
``tcga-folder`` · ``precomputed``: ``precomputed`` · ``synthetic``: ``synthetic-tcga``.
``common`` holds the helpers they share (ids, paths, tables, fingerprints) and registers nothing.
"""
