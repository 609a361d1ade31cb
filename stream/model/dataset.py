"""The Cleveland heart-disease data set: raw Orange ``.tab`` -> event field names.

``heartrisk data convert`` re-runs the conversion from ``data/raw/heart_disease.tab``
(shipped in PyPI's ``orange3`` wheel as ``Orange/datasets/heart_disease.tab``) into
``data/heart_disease.csv``. A ``?`` in the raw file is a missing value and stays
missing (an empty CSV cell).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from stream.contract.schema import field_names
from stream.errors import HeartriskError

TARGET = "disease"
ID_COLUMN = "patient_id"

# raw column -> (event field, mapping of raw value -> event value, or None for numbers)
RAW_MAPPING: dict[str, tuple[str, dict[str, str] | None]] = {
    "age": ("Age", None),
    "rest SBP": ("Blood_Pressure", None),
    "cholesterol": ("Cholesterol", None),
    "max HR": ("Heart_Rate", None),
    "gender": ("Sex", {"male": "Male", "female": "Female"}),
    "chest pain": (
        "angina",
        {
            "typical ang": "Stable angina",
            "atypical ang": "Unstable angina",
            "non-anginal": "Other pains",
            "asymptomatic": "Asymptomatic",
        },
    ),
    "fasting blood sugar > 120": (
        "Glycemia",
        {"0": "Less than 120 mg/dl", "1": "Greater than 120 mg/dl"},
    ),
    "rest ECG": (
        "ECG",
        {
            "normal": "Normal",
            "ST-T abnormal": "ST-T abnormality",
            "left vent hypertrophy": "Left ventricular hypertrophy",
        },
    ),
    "exerc ind ang": ("angina_after_sport", {"0": "No", "1": "Yes"}),
    "slope peak exc ST": ("ecg_slope", {"upsloping": "Rising", "flat": "Flat", "downsloping": "Falling"}),
    "major vessels colored": ("fluoroscopy", None),
    "thal": ("thalassemia", {"normal": "No", "fixed defect": "Fixed defect", "reversable defect": "Reversible defect"}),
}
RAW_TARGET = "diameter narrowing"
INTEGER_FIELDS = {"Age", "fluoroscopy"}


class DatasetError(HeartriskError):
    """The raw data does not look like the Cleveland data set."""


def _number(text: str, integer: bool) -> int | float | None:
    if text == "?":
        return None
    value = float(text)
    return int(value) if integer or value.is_integer() else value


def convert_raw(tab_path: Path) -> list[dict[str, Any]]:
    """Map the raw Orange table to event rows (with ``patient_id`` and ``disease``).

    Raises:
        DatasetError: a column or a category is not the expected one.
    """
    lines = tab_path.read_text().splitlines()
    header = lines[0].split("\t")
    missing = [c for c in [*RAW_MAPPING, RAW_TARGET] if c not in header]
    if missing:
        msg = f"{tab_path} lacks the columns {missing}: is it Orange's heart_disease.tab?"
        raise DatasetError(msg)
    rows: list[dict[str, Any]] = []
    # Orange's .tab has two more header lines (types, flags) before the data.
    for n, line in enumerate(lines[3:], start=1):
        if not line.strip():
            continue
        raw = dict(zip(header, line.split("\t"), strict=True))
        row: dict[str, Any] = {ID_COLUMN: f"cleveland-{n:03d}"}
        for column, (name, mapping) in RAW_MAPPING.items():
            text = raw[column].strip()
            if mapping is None:
                row[name] = _number(text, name in INTEGER_FIELDS)
            elif text == "?":
                row[name] = None
            elif text in mapping:
                row[name] = mapping[text]
            else:
                msg = f"{tab_path} row {n}: unexpected {column!r} value {text!r}"
                raise DatasetError(msg)
        row[TARGET] = "No" if raw[RAW_TARGET].strip() == "0" else "Yes"
        rows.append(row)
    return rows


def columns() -> list[str]:
    """CSV column order."""
    return [ID_COLUMN, *field_names(), TARGET]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write event rows; a missing value is an empty cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns(), lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in columns()})


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Read the event CSV back into typed rows (numbers as numbers, empty as None)."""
    out = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if v == "":
                    row[k] = None
                elif k in INTEGER_FIELDS:
                    row[k] = int(v)
                elif k in ("Blood_Pressure", "Cholesterol", "Heart_Rate"):
                    row[k] = float(v)
                else:
                    row[k] = v
            out.append(row)
    return out


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
