"""Hook specifications: the whole plugin API of fusionkit.

Every component hook receives a ``register`` callback, so the order in which
plugins are called never matters::

    from fusionkit import Encoder, hookimpl

    class MyEncoder(Encoder):
        '''My encoder: one line that becomes the `fusionkit list` summary.'''
        modality = "text"
        input_kind = "text"

        def __init__(self, dim: int = 768):
            self.dim = dim

        def encode(self, data, ctx=None):
            ...

    @hookimpl
    def register_encoders(register):
        register("my-encoder", MyEncoder, licence="MIT", dim=768)

``register(name, factory, **metadata)``: ``name`` is kebab-case and unique
within its kind; ``factory`` is a subclass of that kind's base class
(``fusionkit.Encoder`` for encoders...) whose constructor signature is its
parameter schema; metadata keys
(all optional) are ``summary``, ``modality``, ``dim``, ``licence``, ``gated``,
``weights_source``, ``params``, ``tags``. A name that another plugin already
registered is an error naming both plugins; pass ``override=True`` to replace
a component on purpose.

Third-party packages expose a module through the entry-point group
``fusionkit``::

    [project.entry-points.fusionkit]
    my_plugin = "my_plugin"

Hooks are only ever added within a major version; never renamed.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("fusionkit")
hookimpl = pluggy.HookimplMarker("fusionkit")

Register = Callable[..., None]


@hookspec
def register_readers(register: Register) -> None:
    """Register data readers (raw inputs -> RawDataset).

    Example: ``register("rna-table", RnaTableReader)``.
    """


@hookspec
def register_encoders(register: Register) -> None:
    """Register modality encoders (raw items -> float32 vectors).

    Example: ``register("sbert", SbertEncoder, modality="text", dim=384, licence="Apache-2.0")``.
    """


@hookspec
def register_adapters(register: Register) -> None:
    """Register width adapters (encoder width -> the recipe's common width).

    Example: ``register("zero-pad", ZeroPad)``.
    """


@hookspec
def register_samplers(register: Register) -> None:
    """Register samplers (embedding pool -> DrawPlan of indices).

    Example: ``register("modality-level", ModalityLevelSampler)``.
    """


@hookspec
def register_perturbations(register: Register) -> None:
    """Register perturbations (DrawPlan -> DrawPlan, e.g. noise replacement).

    Example: ``register("gaussian-replace", GaussianReplace)``.
    """


@hookspec
def register_aggregators(register: Register) -> None:
    """Register aggregators (gathered draws -> one vector per aggregate).

    Example: ``register("sum", SumAggregator)``.
    """


@hookspec
def register_indexes(register: Register) -> None:
    """Register vector indexes used for retrieval.

    Example: ``register("faiss-flat", FaissFlatIndex)``.
    """


@hookspec
def register_tasks(register: Register) -> None:
    """Register tasks (experiments that read the pool and write results).

    Example: ``register("recognizer", RecognizerTask)``.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``fusionkit`` click group.

    Example::

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def hello():
                click.echo("hi")
    """


#: component hook name -> component kind
COMPONENT_HOOKS = {
    "register_readers": "reader",
    "register_encoders": "encoder",
    "register_adapters": "adapter",
    "register_samplers": "sampler",
    "register_perturbations": "perturbation",
    "register_aggregators": "aggregator",
    "register_indexes": "index",
    "register_tasks": "task",
}
ALL_HOOKS = tuple(COMPONENT_HOOKS) + ("register_commands",)
