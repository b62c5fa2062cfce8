"""Built-in sampling components: ``samplers`` (``modality-level``, ``cancer-specific``,
``patient-level``), ``perturbations`` (``gaussian-replace``), ``aggregators`` (``sum``, ``mean``,
``concat``).
"""
