"""Outcome feedback end to end: real broker, the scorer, the feedback query, the exporter, the CLI producer.

The 303 real patients are scored; `heartrisk outcomes` publishes their true outcomes
(90 %), outcomes for event ids never scored, and outcomes confirmed beyond the bound.
The accuracy, AUC and Brier score the exporter reports must equal the ones this test
computes on its own from both topics, to 1e-9; every other outcome is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from confluent_kafka import Producer

from stream.app.produce import generate, publish
from stream.config import load_settings
from tests.helpers import consume, end_offsets_total, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
BOUND_S = 300


def _iso(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _auc(pairs: list[tuple[float, int, int]]) -> float:
    """The definition: over every (positive, negative) pair, 1 if the positive's probability is higher, 1/2 on a tie."""
    pos = [p for p, _, y in pairs if y == 1]
    neg = [p for p, _, y in pairs if y == 0]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))


def _metrics(url: str) -> dict[str, float]:
    status, body = http_get(url)
    if status != 200:
        return {}
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in body.splitlines() if line and not line.startswith("#")}


def test_feedback_figures_equal_an_independent_computation_and_every_outcome_is_counted(
    kafka_bootstrap, make_topics, tmp_path
):
    inp, out, dlq, outcomes_topic, quality = make_topics("events", "predictions", "dlq", "outcomes", "quality")
    exporter_port = free_port()
    env = {
        **os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
        "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq, "HEARTRISK_OUTCOMES_TOPIC": outcomes_topic,
        "HEARTRISK_QUALITY_TOPIC": quality, "HEARTRISK_QUERY_NAME": "fb", "HEARTRISK_FEEDBACK_BOUND": str(BOUND_S),
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "HEARTRISK_SPARK_MASTER": "local[2]",
        "HEARTRISK_TRIGGER": "processing-time=500ms", "HEARTRISK_EXPORTER_PORT": str(exporter_port),
        "HEARTRISK_EXPORTER_INTERVAL": "1", "HEARTRISK_PUSHGATEWAY": f"127.0.0.1:{free_port()}",
    }
    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                              "outcomes_topic": outcomes_topic, "feedback_bound": float(BOUND_S)})
    procs = {}

    def start(name: str, *args: str) -> subprocess.Popen:
        procs[name] = subprocess.Popen([HEARTRISK, *args], env=env, stdout=open(tmp_path / f"{name}.log", "ab"),
                                       stderr=subprocess.STDOUT)
        return procs[name]

    try:
        start("scorer", "score")
        publish(generate(303, "dataset", settings), 303, settings, progress=False)
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) == 303, 240, what="303 predictions")
        start("feedback", "feedback")
        start("exporter", "exporter")
        r = subprocess.run([HEARTRISK, "outcomes", "--share", "0.9", "--unknown", "7", "--late", "5", "--seed", "3"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        n_outcomes = int(r.stdout.split()[1])

        # The independent computation, from both topics.
        preds = {json.loads(m.value())["event_id"]: json.loads(m.value())
                 for m in consume(kafka_bootstrap, out, lambda rs: len(rs) >= 303, 60)}
        outs = [json.loads(m.value()) for m in consume(kafka_bootstrap, outcomes_topic,
                                                        lambda rs: len(rs) >= n_outcomes, 60)]
        pairs: list[tuple[float, int, int]] = []
        by_group: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        for o in outs:
            p = preds.get(o["event_id"])
            scored = datetime.fromisoformat(p["scored_at"].replace("Z", "+00:00")) if p else None
            if p and abs((_iso(o["confirmed_at"]) - scored).total_seconds()) <= BOUND_S:
                pairs.append((p["probability"], p["prediction"], o["outcome"]))
                by_group.setdefault(("sex", o["Sex"]), []).append(pairs[-1])
                band = "<50" if o["Age"] < 50 else "50-60" if o["Age"] <= 60 else ">60"
                by_group.setdefault(("age_band", band), []).append(pairs[-1])
        unmatched = len(outs) - len(pairs)
        assert len(pairs) > 250 and unmatched == 12, (len(pairs), unmatched)
        auc = _auc(pairs)
        accuracy = sum(1 for _, pr, y in pairs if pr == y) / len(pairs)
        brier = sum((p - y) ** 2 for p, _, y in pairs) / len(pairs)

        url = f"http://127.0.0.1:{exporter_port}/metrics"
        # matched counts come from the batch itself, outcomes read from its progress event, just after it
        m = wait_for(lambda: (x := _metrics(url)).get("heartrisk_feedback_matched_total") == len(pairs)
                     and x.get("heartrisk_feedback_read_total") == n_outcomes and x,
                     180, what="the exporter reports every matched outcome, and every outcome read")
        print(f"\nfeedback: {len(pairs)} matched, accuracy {m['heartrisk_model_accuracy']:.4f}, "
              f"AUC {m['heartrisk_model_auc']:.4f}, Brier {m['heartrisk_model_brier']:.4f}")
        assert abs(m["heartrisk_model_accuracy"] - accuracy) <= 1e-9
        assert abs(m["heartrisk_model_auc"] - auc) <= 1e-9
        assert abs(m["heartrisk_model_brier"] - brier) <= 1e-9
        assert m["heartrisk_feedback_read_total"] == n_outcomes and m["heartrisk_feedback_invalid_total"] == 0
        # the model card's subgroups, from the outcomes' Sex and Age
        assert set(by_group) == {("sex", "Female"), ("sex", "Male"), ("age_band", "<50"), ("age_band", "50-60"),
                                 ("age_band", ">60")}
        aucs: dict[str, dict[str, float]] = {}
        for (kind, value), group in sorted(by_group.items()):
            label = f'{{subgroup="{kind}",value="{value}"}}'
            assert m["heartrisk_model_subgroup_outcomes" + label] == len(group)
            assert abs(m["heartrisk_model_subgroup_auc" + label] - _auc(group)) <= 1e-9, (kind, value)
            flagged_pos = [pr for _, pr, y in group if y == 1]
            assert abs(m["heartrisk_model_subgroup_sensitivity" + label] - sum(flagged_pos) / len(flagged_pos)) <= 1e-9
            aucs.setdefault(kind, {})[value] = _auc(group)
        for kind, values in aucs.items():
            gap = m[f'heartrisk_model_subgroup_gap{{figure="auc",subgroup="{kind}"}}']
            assert abs(gap - (max(values.values()) - min(values.values()))) <= 1e-9
        print("subgroup AUC:", {k: {v: round(a, 4) for v, a in vs.items()} for k, vs in aucs.items()})

        # kill -9 the feedback query and restart it on its checkpoint: its state comes back, nothing counts twice
        procs["feedback"].kill()
        procs["feedback"].wait(30)
        start("feedback", "feedback")
        wait_for(lambda: (tmp_path / "feedback.log").read_text().count("feedback started") == 2, 120,
                 what="the feedback query restarted")

        # Unknown event ids and outcomes beyond the bound come out when the watermark passes them:
        # move both sides' event time past the bound with one far-future record each.
        future_ms = int(time.time() * 1000) + 10 * BOUND_S * 1000
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(outcomes_topic, key=b"tick", value=json.dumps(
            {"event_id": "tick-outcome", "outcome": 0, "confirmed_at": future_ms}).encode())
        producer.produce(out, key=b"tick", value=json.dumps(
            {"event_id": "tick-prediction", "probability": 0.5, "prediction": 1,
             "scored_at": _iso(future_ms).isoformat()}).encode())
        producer.produce(outcomes_topic, key=b"bad", value=b'{"event_id": "x", "outcome": 7}')
        assert producer.flush(30) == 0
        m = wait_for(lambda: (x := _metrics(url)).get("heartrisk_feedback_unmatched_total", 0)
                     + x.get("heartrisk_feedback_late_rows_total", 0) >= unmatched and x,
                     120, what="the unmatched outcomes counted")
        assert m["heartrisk_feedback_unmatched_total"] + m["heartrisk_feedback_late_rows_total"] == unmatched
        assert m["heartrisk_feedback_matched_total"] == len(pairs), "nothing matched twice, across the restart"
        print(f"unmatched {m['heartrisk_feedback_unmatched_total']:.0f}, "
              f"behind the watermark {m['heartrisk_feedback_late_rows_total']:.0f}")
        wait_for(lambda: _metrics(url).get("heartrisk_feedback_invalid_total") == 1, 60, what="the invalid outcome")
        records = consume(kafka_bootstrap, quality, lambda rs: len(rs) >= 1, 60)
        last = json.loads(records[-1].value())
        assert last["outcomes"] == len(pairs) and abs(last["auc"] - auc) <= 1e-9
    finally:
        terminate(procs.values())
