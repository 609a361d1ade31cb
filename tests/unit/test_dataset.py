"""The raw-to-event conversion of the Cleveland data reproduces the committed CSV."""

from __future__ import annotations

from stream.config import PROJECT_ROOT
from stream.model.dataset import convert_raw, read_csv, write_csv

RAW = PROJECT_ROOT / "data" / "raw" / "heart_disease.tab"
CSV = PROJECT_ROOT / "data" / "heart_disease.csv"


def test_conversion_reproduces_committed_csv(tmp_path):
    rows = convert_raw(RAW)
    write_csv(rows, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_bytes() == CSV.read_bytes()


def test_data_set_facts():
    rows = read_csv(CSV)
    assert len(rows) == 303
    assert sum(r["disease"] == "Yes" for r in rows) == 139
    assert sum(r["fluoroscopy"] is None for r in rows) == 4
    assert sum(r["thalassemia"] is None for r in rows) == 2
    assert {r["Sex"] for r in rows} == {"Male", "Female"}
    assert {r["angina"] for r in rows} == {"Stable angina", "Unstable angina", "Other pains", "Asymptomatic"}
    assert {r["ecg_slope"] for r in rows} == {"Rising", "Flat", "Falling"}
    first = rows[0]
    got = (first["Age"], first["Blood_Pressure"], first["thalassemia"], first["disease"])
    assert got == (63, 145.0, "Fixed defect", "No")
