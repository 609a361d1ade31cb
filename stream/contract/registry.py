"""The schema registry client: the one small interface the rest of the code uses.

It speaks the Confluent Schema Registry REST API through confluent-kafka's
``SchemaRegistryClient`` (so a ``mock://`` URL gives its in-process mock, used
by unit tests) and adds two things the scorer needs:

* errors sorted by what to do about them: ``SchemaNotFound`` (the registry
  answered "no such id": dead-letter the event) versus ``RegistryUnavailable``
  (no answer: pause, or dead-letter only if told to);
* a cache of writer schemas by id. A registered schema id never changes its
  schema, so the cache never expires.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from stream.config import Settings
from stream.errors import ConfigError, RegistryUnavailable, SchemaNotFound
from stream.spec import clear_text_off_host, redact_url, redact_values

logger = logging.getLogger(__name__)

# Confluent's error code for "schema not found" (HTTP 404) and "subject not found".
_NOT_FOUND_CODES = (40403, 40401)
TIMEOUT_S = 5


@dataclass(frozen=True)
class WriterSchema:
    """A schema as the registry stores it."""

    schema_id: int
    schema_type: str  # AVRO | JSON | PROTOBUF
    schema_str: str

    @property
    def parsed(self) -> Any:
        """The schema as JSON (Avro schemas are JSON)."""
        return json.loads(self.schema_str)


def subject_for(topic: str) -> str:
    """The TopicNameStrategy subject of a topic's values."""
    return f"{topic}-value"


class SchemaRegistry:
    """Fetch writer schemas by id (cached) and register schemas under subjects."""

    def __init__(self, url: str, user_info: str = "", timeout_s: float = TIMEOUT_S, ca_file: str = "") -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf: dict[str, Any] = {"url": url, "timeout": timeout_s, "max.retries": 1}
        if ca_file:
            conf["ssl.ca.location"] = ca_file
        if user_info and redact_url(url) != url:
            msg = ("the registry credentials are given twice, in HEARTRISK_SCHEMA_REGISTRY_URL and in "
                   "HEARTRISK_SCHEMA_REGISTRY_USER_INFO: keep the variable (or its _FILE), and a URL without "
                   "user:pass@")
            raise ConfigError(msg)
        if user_info:
            conf["basic.auth.user.info"] = user_info
            if clear_text_off_host(url):
                logger.warning(
                    'event="registry credentials over plain http" url="%s" detail="the password travels '
                    'unencrypted: use an https:// HEARTRISK_SCHEMA_REGISTRY_URL"', redact_url(url),
                )
        self.url = url
        try:
            self.client = SchemaRegistryClient.new_client(conf)
        except ValueError as exc:  # its messages name options, but scrub the credentials all the same
            secrets = {"user.info": user_info, "password": user_info.partition(":")[2], "url.password": url}
            why = redact_values(str(exc), secrets)
            msg = f"the schema registry client refused its settings ({redact_url(why)}): see the README, Avro"
            raise ConfigError(msg) from exc
        self._cache: dict[int, WriterSchema] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        """Build from the settings object."""
        ca = str(settings.path(settings.tls_ca_file)) if settings.tls_ca_file else ""
        return cls(settings.schema_registry_url, settings.schema_registry_user_info, ca_file=ca)

    def __repr__(self) -> str:
        return f"SchemaRegistry({redact_url(self.url)!r})"

    def _unavailable(self, what: str, exc: Exception) -> RegistryUnavailable:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        status = getattr(exc, "http_status_code", None)
        if status in (401, 403):
            did, hint = "refused the credentials", ("Check HEARTRISK_SCHEMA_REGISTRY_USER_INFO (or its _FILE): "
                                                    "user:password of a user the registry knows")
        elif "CERTIFICATE_VERIFY_FAILED" in reason:
            did = "sent a certificate this client does not trust"
            hint = "Set HEARTRISK_TLS_CA_FILE to the PEM file of the CA that signed it"
        else:
            did, hint = "did not answer", ("Start it (`heartrisk registry up` for the local one) or set "
                                           "HEARTRISK_SCHEMA_REGISTRY_URL")
        msg = f"the schema registry at {redact_url(self.url)} {did} ({what}): {reason}. {hint}"
        return RegistryUnavailable(msg)

    def cached(self) -> dict[int, WriterSchema]:
        """The writer schemas fetched so far, by id."""
        with self._lock:
            return dict(self._cache)

    def writer_schema(self, schema_id: int) -> WriterSchema:
        """The schema registered under ``schema_id``.

        Raises:
            SchemaNotFound: the registry has no such id.
            RegistryUnavailable: the registry did not answer.
        """
        with self._lock:
            hit = self._cache.get(schema_id)
        if hit is not None:
            return hit
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 or exc.error_code in _NOT_FOUND_CODES:
                msg = f"schema id {schema_id} is not in the registry at {redact_url(self.url)}"
                raise SchemaNotFound(msg) from exc
            what = f"schema id {schema_id}"
            raise self._unavailable(what, exc) from exc
        except Exception as exc:  # httpx transport errors, timeouts, DNS ...
            what = f"schema id {schema_id}"
            raise self._unavailable(what, exc) from exc
        found = WriterSchema(schema_id, schema.schema_type or "AVRO", schema.schema_str or "")
        with self._lock:
            self._cache[schema_id] = found
        return found

    def register(self, subject: str, schema_str: str) -> int:
        """Register an Avro schema under a subject (idempotent); returns its id.

        Raises:
            RegistryUnavailable: the registry did not answer, or refused the schema.
        """
        from confluent_kafka.schema_registry import Schema

        try:
            schema_id = int(self.client.register_schema(subject, Schema(schema_str, "AVRO")) or 0)
        except Exception as exc:
            what = f"registering {subject}"
            raise self._unavailable(what, exc) from exc
        with self._lock:
            self._cache[schema_id] = WriterSchema(schema_id, "AVRO", schema_str)
        return schema_id

    def subject_schema_ids(self, subject: str) -> list[int]:
        """Ids of every version registered under a subject ([] when there is none).

        Raises:
            RegistryUnavailable: the registry did not answer.
        """
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            versions = self.client.get_versions(subject)
            return [int(self.client.get_version(subject, v).schema_id or 0) for v in versions]
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return []
            what = f"subject {subject}"
            raise self._unavailable(what, exc) from exc
        except Exception as exc:
            what = f"subject {subject}"
            raise self._unavailable(what, exc) from exc
