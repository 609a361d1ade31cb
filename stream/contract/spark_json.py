"""Spark's ``from_json`` (as the stream's decode runs it), read in plain Python.

The HTTP service checks an event without Spark, yet must give the verdict the
stream gives for the same bytes. This module reproduces the parts of Spark's
JSON reading (Jackson with Spark's default options) that decide a verdict,
each one measured against Spark (``tests/unit/test_check_parity.py``):

- the root value is read and anything after it ignored (``{...} trailing``);
  the non-numeric numbers ``NaN``, ``Infinity``, ``+Infinity``, ``-Infinity``,
  ``+INF``, ``-INF`` are accepted; single-quoted strings are not (the decode
  step turns Jackson's ALLOW_SINGLE_QUOTES off: ``{'Age': 54}`` is NOT_JSON);
- a field named twice: each occurrence is converted in turn, a value that
  does not convert leaves the previous one (``{"Age": 54, "Age": "x"}`` reads
  54), and the raw-field map answers with the first occurrence;
- an ``int`` field takes only an integer token within 32 bits; a ``double``
  field takes any number token and the strings ``NaN``, ``Infinity``,
  ``+Infinity``, ``-Infinity``; a ``string`` field takes any token, a
  non-string one as Jackson writes it (``1.0E-4``, ``[1,"a"]``).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
JSON_WHITESPACE = " \t\n\r"
# Jackson's non-numeric numbers that Python's json does not read, as Python reads them
_ODD_NUMBERS = re.compile(r"(?<![\w.])(\+Infinity|\+INF|-INF)(?![\w.])")
_ODD_VALUES = {"+Infinity": "Infinity", "+INF": "Infinity", "-INF": "-Infinity"}
_DOUBLE_STRINGS = {"NaN": math.nan, "Infinity": math.inf, "+Infinity": math.inf, "-Infinity": -math.inf}


class Pairs(list[tuple[str, Any]]):
    """A JSON object, as its (key, value) pairs in document order (duplicates kept)."""


_DECODER = json.JSONDecoder(object_pairs_hook=Pairs)


class NotJson(ValueError):
    """The text does not parse as Spark's JSON reader parses it."""


def _string_end(text: str, i: int) -> int:
    """The index just past the double-quoted string that starts at ``text[i]`` (escapes skipped)."""
    j, n = i + 1, len(text)
    while j < n and text[j] != '"':
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _odd_numbers(text: str) -> str:
    """Rewrite Jackson-only non-numeric numbers outside strings into Python's spelling."""
    out: list[str] = []
    i, n = 0, len(text)
    start = 0
    while i < n:
        if text[i] == '"':
            out.append(_ODD_NUMBERS.sub(lambda m: _ODD_VALUES[m.group(1)], text[start:i]))
            j = _string_end(text, i)
            out.append(text[i:j])
            i = start = j
        else:
            i += 1
    out.append(_ODD_NUMBERS.sub(lambda m: _ODD_VALUES[m.group(1)], text[start:]))
    return "".join(out)


def _decode(text: str) -> tuple[Any, str]:
    start = len(text) - len(text.lstrip(JSON_WHITESPACE))
    value, end = _DECODER.raw_decode(text, start)
    return value, text[end:]


def parse_root(text: str) -> tuple[Any, str]:
    """The root value (objects as ``Pairs``) and the text after it.

    Raises:
        NotJson: no JSON value at the start, as Jackson reads it.
    """
    try:
        value, rest = _decode(text)
    except (ValueError, RecursionError):
        try:
            value, rest = _decode(_odd_numbers(text))
        except (ValueError, RecursionError) as exc:
            raise NotJson(str(exc)) from exc
    return value, rest


def java_double(x: float) -> str:
    """``Double.toString``: ``100.0``, ``1.5``, ``1.0E-4``, ``1.23456789E7``, ``NaN``, ``Infinity``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    a = abs(x)
    if 1e-3 <= a < 1e7:
        text = repr(x)
        if "e" in text:  # repr uses exponents below 1e-4; Java does not until 1e-3
            text = format(x, "f")
        return text if "." in text else text + ".0"
    _, digits, exp = Decimal(repr(a)).as_tuple()
    ds = list(digits)
    while len(ds) > 1 and ds[-1] == 0:
        ds.pop()
        exp = int(exp) + 1
    e = len(ds) - 1 + int(exp)
    body = str(ds[0]) + "." + ("".join(map(str, ds[1:])) or "0")
    return ("-" if x < 0 else "") + f"{body}E{e}"


def render(value: Any) -> str:
    """A non-string token as Jackson copies it into a string field."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Pairs):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + render(v) for k, v in value) + "}"
    return "[" + ",".join(render(v) for v in value) + "]"


class Failed(Exception):
    """A token that does not convert to the field's type (the field keeps its previous value)."""


def _utf8(text: str) -> str:
    """A lone surrogate (from a JSON ``ud800`` escape) becomes ``?``, as Spark's UTF-8 strings hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def to_string(value: Any) -> str | None:
    """A ``string`` field: any token."""
    if value is None:
        return None
    return _utf8(value if isinstance(value, str) else render(value))


def to_int(value: Any) -> int | None:
    """An ``int`` field: an integer token within 32 bits."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX:
        return value
    raise Failed


def to_double(value: Any) -> float | None:
    """A ``double`` field: any number token, or one of the non-numeric strings."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise Failed
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and value in _DOUBLE_STRINGS:
        return _DOUBLE_STRINGS[value]
    raise Failed


CONVERTERS = {"string": to_string, "int": to_int, "double": to_double}


def read_struct(root: Any, fields: dict[str, str]) -> dict[str, Any] | None:
    """The typed struct ``from_json`` gives for ``fields`` (name -> Spark type); None for a non-object root."""
    if not isinstance(root, Pairs):
        return None
    out: dict[str, Any] = dict.fromkeys(fields)
    for key, value in root:
        kind = fields.get(key)
        if kind is None:
            continue
        try:
            out[key] = CONVERTERS[kind](value)
        except Failed:
            pass
    return out


def read_map(root: Any) -> list[tuple[str, str | None]] | None:
    """``from_json(..., 'map<string,string>')``: the pairs with string values; None for a non-object root."""
    if not isinstance(root, Pairs):
        return None
    return [(k, to_string(v)) for k, v in root]


def map_lookup(pairs: list[tuple[str, str | None]] | None, name: str) -> tuple[bool, str | None]:
    """(present, value) as ``map_contains_key`` and ``map[name]`` see it: the first occurrence."""
    if pairs is None:
        return False, None
    for k, v in pairs:
        if k == name:
            return True, v
    return False, None
