"""Declared value constraints on component parameters, checked by ``validate``.

A component states what its parameters may hold next to its constructor, and
``fusionkit validate`` (and therefore ``run``, before anything heavy)
reports every violation with its recipe path::

    from fusionkit import Range, OneOf, Check

    class Knn(Task):
        constraints = {"top_k": Range(1), "fraction": Range(0, 1), "metric": OneOf("l2", "cosine")}

        def __init__(self, top_k: int = 10, fraction: float = 0.5, metric: str = "l2"): ...

``None`` always passes (it means "use the default behaviour"); a list or
tuple passes when each element does (a constraint of ``n: [1000, 2000]`` is a
constraint on each), unless the constraint is a :class:`Check`, which sees
the whole value.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .errors import ComponentError

__all__ = ["Constraint", "Range", "OneOf", "Check", "check_constraints"]


class Constraint:
    """A rule on one parameter value: :meth:`problem` says what is wrong, or None."""

    elementwise = True

    def problem(self, value: Any) -> str | None:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Range(Constraint):
    """``lo <= value <= hi`` (either bound optional, ``lo_open``/``hi_open`` exclude it);
    ``integer`` also requires whole numbers."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, integer: bool = False,
                 lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.integer, self.lo_open, self.hi_open = lo, hi, integer, lo_open, hi_open

    def describe(self) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo}"
        hi = "" if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi}"
        return " and ".join(p for p in (lo, hi) if p) or "any number"

    def problem(self, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.integer and float(value) != int(value):
            return f"must be a whole number, got {value!r}"
        low_bad = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        high_bad = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if low_bad or high_bad:
            return f"must be {self.describe()}, got {value!r}"
        return None


class OneOf(Constraint):
    """The value is one of the given choices."""

    def __init__(self, *choices: Any):
        self.choices = choices

    def describe(self) -> str:
        return "one of " + ", ".join(map(repr, self.choices))

    def problem(self, value: Any) -> str | None:
        if value in self.choices:
            return None
        import difflib

        close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
        return f"must be {self.describe()}, got {value!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


class Check(Constraint):
    """Any rule: ``fn(value)`` returns a problem text or None; it sees the whole value (lists too)."""

    elementwise = False

    def __init__(self, fn: Callable[[Any], str | None], description: str = ""):
        self.fn = fn
        self.description = description or getattr(fn, "__doc__", "") or fn.__name__

    def describe(self) -> str:
        return self.description

    def problem(self, value: Any) -> str | None:
        try:
            return self.fn(value)
        except Exception as exc:  # a rule that cannot read the value says so
            return f"is not valid ({type(exc).__name__}: {exc})"


def _one(constraint: Constraint, value: Any) -> str | None:
    if value is None:
        return None
    if constraint.elementwise and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if item is None:
                continue
            problem = constraint.problem(item)
            if problem:
                return f"[{i}] {problem}"
        return None
    return constraint.problem(value)


def check_constraints(factory: Any, params: Mapping[str, Any], *, kind: str, name: str,
                      where: str | None = None) -> list[ComponentError]:
    """Every violation of ``factory.constraints`` by ``params``, each naming its recipe path."""
    declared = getattr(factory, "constraints", None) or {}
    issues: list[ComponentError] = []
    for param, rule in declared.items():
        if param not in params:
            continue
        rules = rule if isinstance(rule, (list, tuple)) else (rule,)
        for r in rules:
            problem = _one(r, params[param])
            if problem:
                issues.append(ComponentError(f"parameter {param!r} of {kind} {name!r} {problem}",
                                             where=f"{where}.params.{param}" if where else None,
                                             hint=f"allowed: {r.describe()}"))
                break
    return issues
