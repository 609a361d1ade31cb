"""What `heartrisk tail` prints: no control character reaches the terminal, and dead letters' payloads stay hidden."""

from __future__ import annotations

import base64
import json

from stream.app.tail import HIDDEN, _raw, escape_controls, format_dead_letter, format_prediction

ESC_ID = "p-1\x1b[2J\x1b]0;owned\x07\x9b31m"


def _no_controls(text: str) -> bool:
    return not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


def test_control_characters_are_escaped_in_every_line():
    assert escape_controls("a\x1bb\x9bc\nd") == "a\\u001bb\\u009bc\\u000ad"
    prediction = {"scored_at": "t", "risk_level": "High", "probability": 0.9, "patient_id": ESC_ID,
                  "event_id": "e\x00", "model_version": "1\x07", "imputed_fields": ["thalassemia"],
                  "contributions": [{"field": "Sex", "value": "Male\x1b[0m", "contribution": 0.5}]}
    line = format_prediction(prediction, colour=False)
    assert _no_controls(line) and "p-1\\u001b[2J" in line
    coloured = format_prediction(prediction, colour=True)
    assert coloured.startswith("\033[31m") and coloured.endswith("\033[0m")
    assert _no_controls(coloured[len("\033[31m"):-len("\033[0m")]), "only our own colour codes"
    letter = {"failed_at": "t", "error_code": "ID_NOT_PRINTABLE", "stage": "validate", "topic": "in",
              "partition": 0, "offset": 7, "event_id": ESC_ID, "error_detail": "bad \x1b id"}
    assert _no_controls(format_dead_letter(letter, colour=False))


def test_json_output_hides_a_dead_letters_payload_unless_asked_and_stays_valid_json():
    payload = base64.b64encode(b'{"patient_id": "p-1", "Age": 54}').decode()
    letter = {"error_code": "NOT_JSON", "event_id": "e-1", "key_base64": "cC0x", "value_base64": payload,
              "value_sha256": "ab", "value_size": 31}
    value = json.dumps(letter).encode()
    hidden = json.loads(_raw(value, letter, dead_letter=True, show_payload=False))
    assert hidden["value_base64"] == HIDDEN and hidden["key_base64"] == HIDDEN
    assert hidden["value_sha256"] == "ab" and hidden["event_id"] == "e-1"
    shown = json.loads(_raw(value, letter, dead_letter=True, show_payload=True))
    assert shown["value_base64"] == payload
    c1 = json.dumps({"patient_id": "p\x9b1"}, ensure_ascii=False).encode()  # a raw C1 control inside a string
    text = _raw(c1, json.loads(c1), dead_letter=False, show_payload=False)
    assert _no_controls(text) and json.loads(text) == {"patient_id": "p\x9b1"}
    garbage = b"not json \x1b[31m"
    assert _no_controls(_raw(garbage, {}, dead_letter=False, show_payload=False))
