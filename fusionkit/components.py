"""Base classes and data containers shared by every component.

Components follow scikit-learn's conventions: ``__init__`` only stores its
keyword parameters (the constructor signature *is* the parameter schema that
recipes are validated against), learned state ends in ``_``, ``fit`` returns
``self``. Heavy libraries (torch, timm, sentence-transformers, faiss, sklearn)
are imported inside methods, never at module level, so that listing and
validating stay fast.

Kinds of component (the registry keys):

========== ===================================================================
reader     ``read(ctx) -> RawDataset`` raw items per modality, plus labels
encoder    ``fit(data, ctx)``, ``encode(data, ctx) -> float32 (n, dim)``
adapter    width adapters: ``fit(X)``, ``transform(X)`` -> common width
sampler    ``plan(pool, rng, ...) -> DrawPlan`` (indices only, no vectors)
perturbation ``apply(plan, rng) -> DrawPlan`` (marks draws replaced by noise)
aggregator ``reduce(gathered, mask) -> (n, out_dim)``
index      vector index: ``build(X, ids)``, ``search(Q, k)``, ``save``/``load``
task       ``run(ctx) -> dict`` an experiment that writes tables/figures
========== ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from .registry import INPUT_KINDS, KINDS, param_schema

if TYPE_CHECKING:  # type checkers only: the context module imports this one
    from .context import RunContext
    from .pool import EmbeddingPool
    from .recipe import Recipe

__all__ = ["KINDS", "INPUT_KINDS", "Component", "ModalityData", "RawDataset", "DrawPlan", "Aggregates", "Reader",
           "Encoder", "Adapter", "Sampler", "Perturbation", "Aggregator", "Index", "Task", "BASES"]



class Component:
    """Base of all components: parameter handling in the scikit-learn style.

    Every attribute the core reads from a component is declared on its base
    class below, with a default and a comment saying who reads it.
    """

    #: the registry kind (set by each base class; a factory registered under a
    #: kind must subclass that kind's base, see ``BASES``)
    component_kind: ClassVar[str] = ""
    #: parameters that name another component ({param: kind}); recipes validate them
    #: like top-level components (name exists, params bind) and store them resolved
    component_params: ClassVar[dict[str, str]] = {}
    #: declared value constraints of parameters ({param: Range(1) | OneOf(...) | Check(fn)}),
    #: checked when the recipe binds (``fusionkit validate``), see fusionkit/constraints.py
    constraints: ClassVar[dict[str, Any]] = {}

    @classmethod
    def param_names(cls) -> list[str]:
        """Constructor parameter names (the recipe schema), in order."""
        return param_schema(cls).names()

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """Constructor parameters that have a default, with it."""
        return param_schema(cls).defaults()

    @classmethod
    def check_recipe(cls, params: dict[str, Any], recipe: "Recipe") -> list[tuple[str, str, str | None]]:
        """Cross-check bound ``params`` against the whole recipe at validation time.

        Return problems as ``(path, message, hint)`` with ``path`` relative to the
        component's recipe entry (e.g. ``"params.sampling"``; ``""`` for the entry
        itself). Called by ``recipe.validate`` for samplers, perturbations and tasks;
        the default finds nothing.
        """
        return []

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names() if hasattr(self, name)}

    def set_params(self, **params: Any) -> "Component":
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:  # pragma: no cover - cosmetic
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------- data

@dataclass
class ModalityData:
    """Raw items of one modality, one row per item (a patient, a sentence, a tile).

    ``data`` depends on ``kind``:
      * ``matrix``: float32 array (n_items, n_features); ``feature_names`` names columns
      * ``text``: list of str, one per item (a sentence)
      * ``image``: list of file paths (str) or of HxWx3 uint8 arrays
      * ``embedding``: float32 array (n_items, dim) that is already an embedding
    ``labels`` holds per-item label arrays (e.g. ``cancer_type``).
    ``fingerprint`` identifies the input content (sha of the source files and
    reader parameters); it becomes part of every cache key downstream.
    """

    #: travels to remote workers once per batch (see ray_executor)
    __fusionkit_shared__ = True

    modality: str
    kind: str
    patient_ids: np.ndarray
    item_ids: np.ndarray
    data: Any
    feature_names: list[str] | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    fingerprint: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.patient_ids = np.asarray(self.patient_ids).astype(str)
        self.item_ids = np.asarray(self.item_ids).astype(str)

    def __len__(self) -> int:
        return len(self.item_ids)

    def subset(self, index: Sequence[int] | np.ndarray) -> "ModalityData":
        """Rows ``index`` as a new ModalityData (same fingerprint plus a suffix)."""
        index = np.asarray(index)
        if isinstance(self.data, np.ndarray):
            data = self.data[index]
        else:
            data = [self.data[int(i)] for i in index]
        return ModalityData(
            modality=self.modality, kind=self.kind,
            patient_ids=self.patient_ids[index], item_ids=self.item_ids[index],
            data=data, feature_names=self.feature_names,
            labels={k: np.asarray(v)[index] for k, v in self.labels.items()},
            source=self.source, fingerprint=self.fingerprint, extras=dict(self.extras),
        )


@dataclass
class RawDataset:
    """What a reader returns: modalities by name, and a patient label table.

    ``labels`` maps a label name (``cancer_type``, ``subtype``, ``tmb_class``...)
    to a dict ``{patient_id: value}``. ``continuous_labels`` names the labels
    that are measurements rather than classes (a mutation burden, an age): the
    data summary gives their range instead of value counts. Labels whose values
    are all floats are treated as continuous without being named.
    """

    modalities: dict[str, ModalityData] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    continuous_labels: set[str] = field(default_factory=set)


@dataclass
class DrawPlan:
    """Which stored embeddings make up each aggregate: indices only.

    Arrays have shape ``(n, r, k_max)``: ``n`` aggregates, ``r`` repeats that
    are concatenated (1 for modality-level sampling) and ``k_max`` draw slots.
      * ``mod``: int8 modality index into ``modalities``; -1 marks an unused slot
        (when the sample count ``k`` of that aggregate is below ``k_max``)
      * ``item``: int64 row in that modality's store
      * ``noise``: bool, True where a draw was replaced by Gaussian noise
    ``k`` is the sample count of each aggregate; ``patient_ids`` and
    ``group_labels`` carry per-aggregate labels (cancer type, patient...).
    """

    modalities: list[str]
    mod: np.ndarray
    item: np.ndarray
    k: np.ndarray
    noise: np.ndarray | None = None
    noise_std: float = 0.1
    patient_ids: np.ndarray | None = None
    group_labels: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mod.ndim != 3 or self.mod.shape != self.item.shape:
            raise ValueError(f"DrawPlan arrays must be (n, r, k_max), got mod {self.mod.shape} item {self.item.shape}")
        if self.noise is None:
            self.noise = np.zeros(self.mod.shape, dtype=bool)

    @property
    def n(self) -> int:
        return int(self.mod.shape[0])

    @property
    def repeats(self) -> int:
        return int(self.mod.shape[1])

    @property
    def k_max(self) -> int:
        return int(self.mod.shape[2])

    def counts(self) -> np.ndarray:
        """(n, n_modalities) int32: real (non-noise) draws of each modality, over all repeats."""
        real = (~self.noise) & (self.mod >= 0)
        out = np.zeros((self.n, len(self.modalities)), dtype=np.int32)
        for m in range(len(self.modalities)):
            out[:, m] = ((self.mod == m) & real).sum(axis=(1, 2))
        return out

    def presence(self) -> np.ndarray:
        """(n, n_modalities) int8: 1 where a modality contributes at least one real draw."""
        return (self.counts() > 0).astype(np.int8)

    def take(self, index: np.ndarray) -> "DrawPlan":
        index = np.asarray(index)
        return DrawPlan(
            modalities=list(self.modalities), mod=self.mod[index], item=self.item[index],
            k=self.k[index], noise=self.noise[index], noise_std=self.noise_std,
            patient_ids=None if self.patient_ids is None else self.patient_ids[index],
            group_labels={key: v[index] for key, v in self.group_labels.items()},
            meta=dict(self.meta),
        )


@dataclass
class Aggregates:
    """Aggregated vectors with their labels (the output of sampling + aggregation)."""

    X: np.ndarray
    modalities: list[str]
    counts: np.ndarray
    k: np.ndarray
    patient_ids: np.ndarray | None = None
    group_labels: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def presence(self) -> np.ndarray:
        return (self.counts > 0).astype(np.int8)

    def __len__(self) -> int:
        return int(self.X.shape[0])


# --------------------------------------------------------------------------- components

class Reader(Component):
    """Reads raw inputs into a :class:`RawDataset`."""

    component_kind = "reader"
    #: modalities this reader can produce; recipe validation checks a modality's
    #: ``input`` against it (empty: not checked, e.g. readers of labels only)
    provides: ClassVar[tuple[str, ...]] = ()
    #: patient labels it yields (shown by ``list``/``describe``; not checked)
    yields_labels: ClassVar[tuple[str, ...]] = ()

    def read(self, ctx: "RunContext") -> RawDataset:  # pragma: no cover - interface
        raise NotImplementedError

    def fingerprint_inputs(self) -> list[str]:
        """Paths whose content identifies this reader's input (the engine hashes them
        into the run record and every cache key downstream)."""
        return []


class Encoder(Component):
    """Turns raw items of one modality into float32 vectors.

    The encode stage reads ``input_kind`` (checked against the data), ``trainable``
    (call ``fit`` once, then ``save``; ``load`` on resume and in remote workers),
    ``shard_size`` (items per cached unit), ``wants_gpu`` (placement on executors
    that place work) and ``output_dim``.
    """

    component_kind = "encoder"
    #: the modality it is meant for (listing and model card; "any" = no preference)
    modality: ClassVar[str] = "any"
    #: the ModalityData kind it consumes (one of INPUT_KINDS, or "any")
    input_kind: ClassVar[str] = "matrix"
    #: model card: licence, gated, weights_source, params, dim, tags
    card: ClassVar[dict[str, Any]] = {}
    #: True when ``fit`` learns from the data (VAEs): the engine calls ``fit`` then
    #: ``save`` once and ``load`` afterwards. False for pretrained models: ``fit`` is
    #: never called (a conformance error if it is overridden).
    trainable: ClassVar[bool] = False
    #: preferred number of items per encode shard (cache and resume unit)
    shard_size: ClassVar[int] = 4096
    #: ask executors that place work (Ray) for a GPU per shard; None: yes for image input
    wants_gpu: ClassVar[bool | None] = None

    @property
    def output_dim(self) -> int:
        """Output width: the ``dim`` parameter, else the card's ``dim``."""
        dim = getattr(self, "dim", None) or self.card.get("dim")
        if dim is None:
            raise NotImplementedError(f"{type(self).__name__} does not declare its output width")
        return int(dim)

    def gpu_wanted(self) -> bool:
        """``wants_gpu``, or by default whether the encoder reads images."""
        return bool(self.input_kind == "image" if self.wants_gpu is None else self.wants_gpu)

    def fit(self, data: ModalityData, ctx: "RunContext | None" = None) -> "Encoder":
        """Learn from the data (trainable encoders only); returns self."""
        return self

    def encode(self, data: ModalityData, ctx: "RunContext | None" = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def save(self, path: str) -> None:
        """Persist learned state into the folder ``path`` (trainable encoders)."""

    def load(self, path: str) -> "Encoder":
        """Restore what :meth:`save` wrote (trainable encoders); returns self."""
        return self


class Adapter(Component):
    """Maps an encoder's output width onto the recipe's common width."""

    component_kind = "adapter"
    #: which widths it can reach from an encoder's width: "grow" (never shrinks), "shrink"
    #: (never grows) or "any"; ``validate`` checks encoder -> adapter -> recipe width with it
    width_rule: ClassVar[str] = "any"

    def fit(self, X: np.ndarray, dim: int, rng: np.random.Generator | None = None) -> "Adapter":
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class Sampler(Component):
    """Builds a :class:`DrawPlan` from an embedding pool."""

    component_kind = "sampler"

    @classmethod
    def estimate_aggregates(cls, params: dict[str, Any], recipe: "Recipe") -> int | None:
        """How many aggregates these ``params`` plan (``validate`` estimates their memory);
        None when unknown. The default reads an integer ``n`` parameter."""
        n = params.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) else None

    def plan(self, pool: "EmbeddingPool", rng: np.random.Generator) -> DrawPlan:  # pragma: no cover
        raise NotImplementedError


class Perturbation(Component):
    """Changes a :class:`DrawPlan` (e.g. replaces draws by noise)."""

    component_kind = "perturbation"
    #: "test" (train clean / test noisy), "train" or "both"; read by tasks
    apply_to: str = "test"

    def apply(self, plan: DrawPlan, rng: np.random.Generator) -> DrawPlan:  # pragma: no cover
        raise NotImplementedError


class Aggregator(Component):
    """Reduces gathered draws ``(n, k_max, d)`` with a mask ``(n, k_max)`` to ``(n, out)``.

    ``fusionkit.aggregate`` reads ``linear``, ``l2_normalize``, ``center`` and ``scale``,
    and prepares each draw ``x`` of modality ``m`` before weighting it:

    * ``center``: ``x - mean_m``, the mean vector of m's whole store (label-free);
    * ``l2_normalize`` (linear aggregators): divided by its norm (after centring);
    * ``scale``: divided by ``rms_m``, the root mean square entry of m's whole store
      (of ``x - mean_m`` with ``center``: the root mean of its column variances), so
      that every modality's draws have a mean squared entry of 1 and each contributes
      equally, in expected squared norm, to a sum, whatever its encoder's scale.
      ``rms_m`` is one scalar per modality, computed once per store (blockwise,
      cached with the mean; ``ModalityView.rms``). With ``l2_normalize`` every draw
      already has norm 1, so ``scale`` changes nothing.

    Draws replaced by noise (``gaussian-replace``) are not store rows: they are
    neither centred nor scaled, so the noise ``std`` is measured against the
    prepared draws (with ``scale``: against a per-entry RMS of 1).
    """

    component_kind = "aggregator"
    #: True when the result is a weighted sum of the draws (sum, mean): the engine
    #: then gathers and accumulates in one sparse product, without an
    #: intermediate (n, k_max, d) buffer. Such aggregators implement ``weights``.
    linear: ClassVar[bool] = False
    #: with ``linear``: divide each draw by its L2 norm before weighting
    l2_normalize: bool = False
    #: subtract each modality's mean vector (over its whole store) from its draws
    center: bool = False
    #: divide each modality's draws by its store's RMS entry (of x - mean with ``center``)
    scale: bool = False

    def output_dim(self, dim: int, k_max: int) -> int:
        return dim

    def weights(self, mask: np.ndarray) -> np.ndarray:
        """Linear aggregators: per-slot weights (n, k_max) float32 given the slot mask."""
        raise NotImplementedError

    def reduce(self, gathered: np.ndarray, mask: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


class Index(Component):
    """A vector index over aggregates (retrieval)."""

    component_kind = "index"

    def build(self, X: np.ndarray, ids: np.ndarray) -> "Index":  # pragma: no cover
        raise NotImplementedError

    def search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """Return (distances or scores (nq, k), ids (nq, k))."""
        raise NotImplementedError

    def save(self, path: str) -> None:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def load(cls, path: str) -> "Index":  # pragma: no cover
        raise NotImplementedError


class Task(Component):
    """An experiment: reads the pool through the run context, writes results."""

    component_kind = "task"

    def run(self, ctx: "RunContext") -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError


#: kind -> the base class every factory registered under that kind subclasses
BASES: dict[str, type[Component]] = {
    "reader": Reader, "encoder": Encoder, "adapter": Adapter, "sampler": Sampler,
    "perturbation": Perturbation, "aggregator": Aggregator, "index": Index, "task": Task,
}
