"""Avro, pure Python: the Confluent wire format, the project's schemas, and schema resolution rules.

Wire format (Confluent): byte 0 is the magic byte ``0``, bytes 1-4 the schema id
(big-endian), the rest the Avro binary encoding written with that schema.

The reader schema is the newest ``schemas/patient_event.v<N>.avsc``. Whether a
writer schema can be read with it follows the Avro specification's resolution
rules (``compatibility_error``); the scorer checks this once per schema id, on
the driver, so rows from an incompatible writer become ``INCOMPATIBLE_SCHEMA``
dead letters instead of failing inside the decoder.
"""

from __future__ import annotations

import json
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any

from stream.contract.schema import SCHEMAS_DIR
from stream.errors import SchemaError

MAGIC = 0
HEADER_BYTES = 5
EVENT_SCHEMA_RE = re.compile(r"^patient_event\.v(\d+)\.avsc$")
PREDICTION_AVSC = "prediction.v1.avsc"

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def frame(schema_id: int, payload: bytes) -> bytes:
    """Prefix an Avro payload with the 5-byte Confluent header."""
    return struct.pack(">bI", MAGIC, schema_id) + payload


def header_hex(schema_id: int) -> str:
    """The 5-byte header as hex (for Spark's ``unhex``)."""
    return frame(schema_id, b"").hex()


def parse_header(message: bytes) -> tuple[int, bytes]:
    """(schema id, payload) of a framed message.

    Raises:
        ValueError: not framed (too short, or the first byte is not 0).
    """
    if len(message) < HEADER_BYTES or message[0] != MAGIC:
        msg = "not a Confluent-framed Avro message"
        raise ValueError(msg)
    return struct.unpack(">I", message[1:HEADER_BYTES])[0], message[HEADER_BYTES:]


def event_schema_versions(schemas_dir: Path = SCHEMAS_DIR) -> dict[int, Path]:
    """``{version: path}`` of every ``patient_event.v<N>.avsc``, oldest first."""
    found = {int(m.group(1)): p for p in schemas_dir.iterdir() if (m := EVENT_SCHEMA_RE.match(p.name))}
    return dict(sorted(found.items()))


def load_avsc(path: Path) -> dict[str, Any]:
    """Read and parse one ``.avsc`` file.

    Raises:
        SchemaError: missing, not JSON, or not a valid Avro schema.
    """
    import fastavro

    try:
        data: dict[str, Any] = json.loads(path.read_text())
        fastavro.parse_schema(data)
    except FileNotFoundError as exc:
        msg = f"Avro schema {path} is missing: restore it from git"
        raise SchemaError(msg) from exc
    except (json.JSONDecodeError, fastavro.schema.SchemaParseException, ValueError, KeyError) as exc:
        msg = f"Avro schema {path} is invalid: {exc}"
        raise SchemaError(msg) from exc
    return data


@lru_cache(maxsize=2)
def reader_schema(schemas_dir: Path = SCHEMAS_DIR) -> str:
    """The reader schema (the newest event version) as a JSON string."""
    versions = event_schema_versions(schemas_dir)
    if not versions:
        msg = f"no patient_event.v<N>.avsc in {schemas_dir}"
        raise SchemaError(msg)
    return json.dumps(load_avsc(versions[max(versions)]))


@lru_cache(maxsize=2)
def outcome_schema(schemas_dir: Path = SCHEMAS_DIR) -> str:
    """The outcome record's Avro schema as a JSON string (``heartrisk feedback`` reads Avro outcomes with it)."""
    return json.dumps(load_avsc(schemas_dir / "patient_outcome.v1.avsc"))


def prediction_schema(schemas_dir: Path = SCHEMAS_DIR) -> str:
    """The prediction record's Avro schema as a JSON string."""
    return json.dumps(load_avsc(schemas_dir / PREDICTION_AVSC))


# ---- schema resolution (Avro specification, "Schema Resolution") ------------
def _expand(schema: Any) -> Any:
    import fastavro

    return fastavro.schema.expand_schema(schema)


def _type_name(s: Any) -> str:
    if isinstance(s, list):
        return "union"
    if isinstance(s, dict):
        t = s["type"]
        return t if isinstance(t, str) else _type_name(t)
    return str(s)


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _resolve(writer: Any, reader: Any, path: str) -> str | None:
    if isinstance(writer, dict) and not isinstance(writer["type"], str):
        writer = writer["type"]
    if isinstance(reader, dict) and not isinstance(reader["type"], str):
        reader = reader["type"]
    if isinstance(writer, list):
        for branch in writer:  # every branch the writer may have written must be readable
            err = _resolve(branch, reader, path)
            if err:
                return err
        return None
    if isinstance(reader, list):
        if any(_resolve(writer, branch, path) is None for branch in reader):
            return None
        return f"{path}: the writer's {_type_name(writer)} matches no branch of the reader's union"
    wt, rt = _type_name(writer), _type_name(reader)
    if wt in _PRIMITIVES or rt in _PRIMITIVES:
        if rt in _PROMOTIONS.get(wt, {wt}):
            return None
        return f"{path}: the writer's {wt} cannot be read as {rt}"
    if wt != rt:
        return f"{path}: the writer's {wt} cannot be read as {rt}"
    if wt in ("record", "enum", "fixed") and _short(writer["name"]) != _short(reader["name"]):
        aliases = {_short(a) for a in reader.get("aliases", [])}
        if _short(writer["name"]) not in aliases:
            return f"{path}: the writer's {wt} {writer['name']} is not the reader's {reader['name']}"
    if wt == "record":
        wfields = {f["name"]: f for f in writer["fields"]}
        for rf in reader["fields"]:
            names = [rf["name"], *rf.get("aliases", [])]
            wf = next((wfields[n] for n in names if n in wfields), None)
            if wf is None:
                if "default" not in rf:
                    return f"{path}.{rf['name']}: the writer has no such field and the reader has no default"
                continue
            err = _resolve(wf["type"], rf["type"], f"{path}.{rf['name']}")
            if err:
                return err
        return None
    if wt == "enum":
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing and "default" not in reader:
            return f"{path}: the writer's symbols {missing} are unknown to the reader"
        return None
    if wt == "array":
        return _resolve(writer["items"], reader["items"], f"{path}[]")
    if wt == "map":
        return _resolve(writer["values"], reader["values"], f"{path}{{}}")
    if wt == "fixed" and writer["size"] != reader["size"]:
        return f"{path}: fixed sizes differ ({writer['size']} vs {reader['size']})"
    return None


def compatibility_error(writer: Any, reader: Any) -> str | None:
    """Why data written with ``writer`` cannot be read with ``reader``, or None if it can.

    Both are Avro schemas (parsed JSON). Writer fields the reader lacks are
    skipped; reader fields the writer lacks need a default; types must match
    or promote (int -> long -> float -> double, string <-> bytes).
    """
    return _resolve(_expand(writer), _expand(reader), "$")
