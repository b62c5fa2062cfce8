"""Error types. Every error says what failed, where, and how to fix it."""

from __future__ import annotations


class FusionkitError(Exception):
    """Base class of every error fusionkit raises on purpose.

    ``where`` names the file, recipe path (``modalities.text.encoder``) or plugin;
    ``hint`` says how to fix it. Both are folded into ``str(err)``.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self._compose())

    def _compose(self) -> str:
        text = self.message
        if self.where:
            text = f"{self.where}: {text}"
        if self.hint:
            text = f"{text}\n  hint: {self.hint}"
        return text


class RecipeError(FusionkitError):
    """A recipe is malformed or names something that does not exist.

    Holds a list of ``issues`` (each a FusionkitError) so that validation can
    report every problem at once.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 issues: list[FusionkitError] | None = None):
        self.issues = list(issues or [])
        super().__init__(message, where=where, hint=hint)

    def _compose(self) -> str:
        text = super()._compose()
        if self.issues:
            text += "".join(f"\n  - {issue}" for issue in self.issues)
        return text


class PluginError(FusionkitError):
    """A plugin failed to load, or a component collides with another."""


class ComponentError(FusionkitError):
    """A registered component is unknown, or its parameters do not bind."""


class DataError(FusionkitError):
    """Input data is missing, malformed or inconsistent (files, columns, NaNs, widths)."""


class StoreError(FusionkitError):
    """An embedding store is missing, corrupt or incompatible."""


class WeightsUnavailableError(FusionkitError):
    """Model weights cannot be found offline."""
