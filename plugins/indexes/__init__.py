"""Built-in vector indexes: ``faiss`` (``faiss-flat``, ``faiss-hnsw``, ``faiss-ivf``),
``numpy_exact`` (``numpy-exact``), ``query`` (the ``fusionkit query`` command); ``common`` holds
the shared metric handling and saved-folder format and registers nothing.
"""
