"""The one exception root of heartrisk-stream, and its subclasses.

Every error the user can cause or fix is a ``HeartriskError``. Its message is
one line that says what went wrong and what to do about it; the CLI prints it
without a stack trace (``--verbose`` shows the trace).
"""

from __future__ import annotations


class HeartriskError(Exception):
    """Root of every error raised on purpose by heartrisk-stream."""

    exit_code = 1


class ConfigError(HeartriskError, ValueError):
    """A setting is missing, malformed or inconsistent."""

    exit_code = 2


class SetupError(HeartriskError):
    """A tool or artifact that `make setup` provides is missing (Java, Maven, jars)."""

    exit_code = 3


class BrokerError(HeartriskError):
    """The Kafka broker cannot be started, reached or stopped."""

    exit_code = 4


class ModelError(HeartriskError):
    """A model directory is missing, corrupt, tampered with or mismatched."""

    exit_code = 5


class CheckpointError(HeartriskError):
    """A checkpoint belongs to a different query configuration."""

    exit_code = 6


class SchemaError(HeartriskError):
    """A schema file is missing or inconsistent with its twin."""

    exit_code = 7


class RegistryError(HeartriskError):
    """The schema registry cannot be started, reached, or does not know a schema."""

    exit_code = 8


class RegistryUnavailable(RegistryError):
    """The registry does not answer (network, 5xx, timeout): retrying may help."""


class StoppedWhilePaused(RegistryUnavailable):
    """A stop was requested while the scorer waited for the registry to settle a new schema id.

    The batch that met the id stays *uncommitted* (it is read again after a
    restart); ``run_scorer`` treats an end by it as a clean stop.
    """

    MARKER = "stopped while paused on the schema registry"


class SchemaNotFound(RegistryError):
    """The registry answered: it has no schema with this id (retrying will not help)."""
