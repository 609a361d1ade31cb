"""The event contract, read from ``schemas/``: one place that says what a valid event is.

The JSON Schema ``patient_event.v1.schema.json`` is the source of the clinical
fields' names, types, ranges, enumerations and nullability; its Avro twin is
checked against it by the tests. Decoding and validation build their Spark
expressions from these field specs, training builds its pipeline from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

from stream.config import PROJECT_ROOT
from stream.errors import SchemaError

SCHEMAS_DIR = PROJECT_ROOT / "schemas"
EVENT_SCHEMA = "patient_event.v1.schema.json"
ENVELOPE_FIELDS = ("event_id", "patient_id", "event_time", "source")

Kind = Literal["integer", "number", "category"]


@dataclass(frozen=True)
class FieldSpec:
    """One clinical field of the event."""

    name: str
    kind: Kind
    nullable: bool
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] = ()
    description: str = ""

    @property
    def spark_type(self) -> str:
        """The Spark SQL type used by ``from_json``."""
        return {"integer": "int", "number": "double", "category": "string"}[self.kind]

    @property
    def is_numeric(self) -> bool:
        """Numbers go to the imputer; categories to the string indexer."""
        return self.kind != "category"


def load_json(name: str, schemas_dir: Path = SCHEMAS_DIR) -> dict[str, Any]:
    """Read one schema file.

    Raises:
        SchemaError: missing or not JSON.
    """
    path = schemas_dir / name
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        msg = f"schema file {path} is missing: restore it from git"
        raise SchemaError(msg) from exc
    except json.JSONDecodeError as exc:
        msg = f"schema file {path} is not valid JSON: {exc}"
        raise SchemaError(msg) from exc
    return data


def _field_from_json(name: str, prop: dict[str, Any]) -> FieldSpec:
    types = prop.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    if "enum" in prop:
        values = tuple(v for v in prop["enum"] if v is not None)
        nullable = None in prop["enum"]
        return FieldSpec(name, "category", nullable, values=values, description=prop.get("description", ""))
    nullable = "null" in types
    base = [t for t in types if t != "null"]
    if base not in (["integer"], ["number"]):
        msg = f"field {name!r} in {EVENT_SCHEMA} must be integer, number or enum, got {types}"
        raise SchemaError(msg)
    return FieldSpec(
        name,
        cast(Kind, base[0]),
        nullable,
        minimum=prop.get("minimum"),
        maximum=prop.get("maximum"),
        description=prop.get("description", ""),
    )


@lru_cache(maxsize=4)
def clinical_fields(schemas_dir: Path = SCHEMAS_DIR) -> tuple[FieldSpec, ...]:
    """The 12 clinical fields, in the schema's ``required`` order."""
    schema = load_json(EVENT_SCHEMA, schemas_dir)
    props = schema["properties"]
    return tuple(_field_from_json(n, props[n]) for n in schema["required"])


def field_names() -> list[str]:
    """Names of the clinical fields."""
    return [f.name for f in clinical_fields()]


def field(name: str) -> FieldSpec:
    """One clinical field by name."""
    for f in clinical_fields():
        if f.name == name:
            return f
    msg = f"no clinical field named {name!r}"
    raise SchemaError(msg)
