"""schemas/ is the single contract: files parse, and each Avro schema agrees with its JSON Schema twin."""

from __future__ import annotations

import json

import fastavro
import jsonschema
import pytest

from stream.contract.schema import SCHEMAS_DIR, clinical_fields, load_json

PAIRS = [
    ("patient_event.v1.avsc", "patient_event.v1.schema.json"),
    ("patient_event.v2.avsc", "patient_event.v2.schema.json"),
    ("prediction.v1.avsc", "prediction.v1.schema.json"),
    ("patient_outcome.v1.avsc", "patient_outcome.v1.schema.json"),
]


def test_every_avro_schema_has_a_json_schema_twin_in_pairs():
    assert {a for a, _ in PAIRS} == {p.name for p in SCHEMAS_DIR.glob("*.avsc")}
AVRO_TYPES = {"integer": {"int", "long"}, "number": {"double", "float"}, "string": {"string"}}


def _avro_fields(avsc: dict) -> dict[str, dict]:
    return {f["name"]: f for f in avsc["fields"]}


def _avro_base(ftype) -> tuple[set, bool]:
    types = ftype if isinstance(ftype, list) else [ftype]
    nullable = "null" in types
    names = set()
    for t in types:
        if t == "null":
            continue
        names.add(t["type"] if isinstance(t, dict) else t)
    return names, nullable


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMAS_DIR.glob("*.avsc")))
def test_avro_schemas_parse(name):
    raw = json.loads((SCHEMAS_DIR / name).read_text())
    parsed = fastavro.parse_schema(raw)
    assert parsed["type"] == "record"
    assert [f["name"] for f in parsed["fields"]] == [f["name"] for f in raw["fields"]]


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMAS_DIR.glob("*.schema.json")))
def test_json_schemas_are_valid(name):
    schema = load_json(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors("not an object"))
    assert errors and errors[0].validator == "type"


@pytest.mark.parametrize(("avsc_name", "json_name"), PAIRS)
def test_avro_and_json_schema_agree(avsc_name, json_name):
    avsc = json.loads((SCHEMAS_DIR / avsc_name).read_text())
    js = load_json(json_name)
    fields = _avro_fields(avsc)
    assert set(fields) == set(js["properties"]), "same field names"
    for name, prop in js["properties"].items():
        avro_types, avro_nullable = _avro_base(fields[name]["type"])
        required = name in js["required"]
        if "enum" in prop:
            values = [v for v in prop["enum"] if v is not None]
            ftype = fields[name]["type"]
            options = ftype if isinstance(ftype, list) else [ftype]
            enum = next((t for t in options if isinstance(t, dict) and t["type"] == "enum"), None)
            if enum is not None:
                assert enum["symbols"] == values, name
            elif all(isinstance(v, int) for v in values):
                assert avro_types & {"int", "long"}, name
            else:
                assert avro_types == {"string"}, name
                assert fields[name].get("doc") == " | ".join(values), f"{name}: Avro doc lists the allowed values"
            json_nullable = None in prop["enum"]
        else:
            jtypes = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
            json_nullable = "null" in jtypes
            for jt in jtypes:
                if jt == "null":
                    continue
                if jt in AVRO_TYPES:
                    assert avro_types & AVRO_TYPES[jt], (name, jt, avro_types)
                else:
                    assert jt in ("array", "object") and avro_types & {"array", "record"}, (name, jt)
        assert avro_nullable == (json_nullable or not required), f"{name}: nullability agrees"


def test_clinical_fields_are_the_twelve_of_the_contract():
    names = [f.name for f in clinical_fields()]
    assert names == [
        "Age", "Blood_Pressure", "Cholesterol", "Heart_Rate", "Sex", "angina", "Glycemia", "ECG",
        "angina_after_sport", "ecg_slope", "fluoroscopy", "thalassemia",
    ]
    nullable = [f.name for f in clinical_fields() if f.nullable]
    assert nullable == ["fluoroscopy", "thalassemia"]


def test_example_event_validates_against_json_schema():
    example = {
        "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
        "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
        "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
    }
    for name in ("patient_event.v1.schema.json", "patient_event.v2.schema.json"):
        schema = load_json(name)
        jsonschema.validate(example, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**example, "Age": 121}, schema)


def test_the_dead_letter_schema_names_every_code_the_scorer_writes():
    from stream.contract.codes import ERROR_CODES

    schema = load_json("dead_letter.v1.schema.json")
    assert set(schema["properties"]["error_code"]["enum"]) == set(ERROR_CODES), "Avro's codes included"
