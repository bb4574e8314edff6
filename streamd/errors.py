"""The small exception hierarchy of streamd.

Each error carries the data a user needs (a field name, a path, a reason); the CLI turns
any :class:`StreamdError` into one clear line and a non-zero exit code instead of a traceback.
They cross process pools (``streamd evaluate`` runs a process per core), so each pickles
with the arguments it was made from (:meth:`StreamdError.__reduce__`).
"""

from __future__ import annotations


class StreamdError(Exception):
    """Base of every error streamd raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1
    _args: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[type[StreamdError], tuple[str, ...]]:
        """Rebuild from the constructor's own arguments: ``Exception`` would pass the one
        formatted message to an ``__init__`` that takes two."""
        return type(self), self._args or tuple(str(a) for a in self.args)


class ConfigError(StreamdError):
    """A setting is invalid; ``field`` is its dotted name, e.g. ``mqtt.port``."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self._args = (field, message)
        self.field = field
        self.message = message


class DataError(StreamdError):
    """Input data (a CSV file, a column) cannot be used."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self._args = (path, message)
        self.path = path
        self.message = message


class ModelError(StreamdError):
    """A model file is missing, malformed, or fails its self-test."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"model {path}: {message}")
        self._args = (path, message)
        self.path = path
        self.message = message


class PayloadError(StreamdError):
    """An MQTT message was rejected; ``reason`` is one of :data:`streamd.core.payload.REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self._args = (reason, detail)
        self.reason = reason
        self.detail = detail
