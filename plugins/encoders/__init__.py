"""Built-in encoders and width adapters, one module per family; each registers the names listed here.

``omics_vae``: ``rna-vae``, ``mutation-vae`` (networks: ``vae_networks``) · ``pca``: ``pca`` (linear
baseline encoder) · ``text``: ``sbert``, ``sbert-mpnet`` · ``tiles``: ``timm-tile``,
``efficientnet-lite0``, ``prov-gigapath`` (their vendored networks: ``tile_networks``, registers
nothing) · ``identity``: ``identity`` · ``adapters``: ``zero-pad``, ``truncate``,
``random-projection``, ``pca``.
"""
