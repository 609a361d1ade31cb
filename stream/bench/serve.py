"""``heartrisk bench --serve``: the HTTP service under a real load generator, against the guide's per-request Spark.

The service runs as its own process (``heartrisk serve``, bearer JWT on, as in
production; rate limit lifted) and Debian's ``hey`` drives it over loopback on
the same 2-core machine:

* fixed rates (``hey -q`` per connection x ``-c`` connections): achieved
  requests/s, p50 and p99 latency from hey's per-request CSV;
* an unthrottled run (16 connections): the most requests/s it sustains;
* ``/v1/predict/batch`` with 100 events per request: events/s.

Each run is repeated ``reps`` times and reported as the median. The baseline
(the original guide's per-request ``createDataFrame -> transform -> collect``)
is measured first in the same run, with the same model, while no server runs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jwt

from stream.bench.measure import machine_info, say
from stream.bench.report import describe_machine
from stream.config import Settings
from stream.errors import SetupError

FULL_RATES = (500, 1000, 2000, 3000)
QUICK_RATES = (200, 500)
BATCH_SIZE = 100
EVENT = {
    "patient_id": "bench-1", "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150,
    "Sex": "Male", "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def hey(url: str, body: Path, token: str, seconds: float, connections: int, rate: float | None) -> dict[str, Any]:
    """One hey run: achieved requests/s, latency percentiles (ms), status counts."""
    cmd = ["hey", "-z", f"{seconds}s", "-c", str(connections), "-m", "POST", "-T", "application/json",
           "-H", f"Authorization: Bearer {token}", "-D", str(body), "-o", "csv"]
    if rate is not None:
        cmd += ["-q", f"{rate / connections:g}"]
    run = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode != 0:
        msg = f"hey exited with {run.returncode}: {run.stderr.strip()[-300:] or run.stdout.strip()[-300:]}"
        raise SetupError(msg)
    out = run.stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    latencies = [float(r["response-time"]) * 1000 for r in rows]
    offsets = [float(r["offset"]) for r in rows]
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status-code"]] = statuses.get(r["status-code"], 0) + 1
    span = max(offsets) - min(offsets) if len(offsets) > 1 else seconds
    return {
        "requests": len(rows),
        "requests_per_second": len(rows) / max(span, 1e-9),
        "latency_ms_p50": _pct(latencies, 0.50),
        "latency_ms_p99": _pct(latencies, 0.99),
        "latency_ms_max": max(latencies),
        "statuses": statuses,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests_per_second", "latency_ms_p50", "latency_ms_p99", "latency_ms_max")
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["non_2xx"] = sum(n for r in runs for code, n in r["statuses"].items() if not code.startswith("2"))
    out["requests"] = sum(r["requests"] for r in runs)
    out["reps"] = len(runs)
    return out


def per_request_baseline(settings: Settings, n: int) -> dict[str, float]:
    """The guide's per-request Spark scoring, on a Spark session of its own (stopped after)."""
    from stream.bench.baselines import per_request
    from stream.model.artifact import load_model
    from stream.session import get_spark

    spark = get_spark(settings, "heartrisk-bench-serve-baseline")
    try:
        model = load_model(settings.path(settings.model_dir), engine="pipeline")
        per_request(spark, model, [EVENT] * 3)  # warm-up: the first Spark jobs compile
        return per_request(spark, model, [EVENT] * n)
    finally:
        spark.stop()


def run_serve_bench(settings: Settings, quick: bool, reps: int, results_dir: Path) -> Path:
    """Measure the service; write ``<date>-serve[-quick].json`` and ``.md``; return the JSON path."""
    if shutil.which("hey") is None:
        msg = "the HTTP load generator `hey` is missing: run `make setup` (Debian package hey)"
        raise SetupError(msg)
    seconds = 3.0 if quick else 10.0
    rates = QUICK_RATES if quick else FULL_RATES
    say("baseline: the guide's per-request Spark scoring")
    baseline = per_request_baseline(settings, 10 if quick else 40)
    say(f"  {baseline['events_per_second']:.2f} events/s")
    with tempfile.TemporaryDirectory(prefix="heartrisk-bench-serve-") as tmp_dir:
        tmp = Path(tmp_dir)
        secret = os.urandom(32).hex().encode()
        (tmp / "secret").write_bytes(secret)
        (tmp / "event.json").write_text(json.dumps(EVENT))
        (tmp / "batch.json").write_text(json.dumps([EVENT] * BATCH_SIZE))
        token = jwt.encode({"sub": "bench", "aud": settings.jwt_audience, "scope": settings.jwt_scope,
                            "exp": int(time.time()) + 3600}, secret, algorithm="HS256")
        env = {**os.environ, "HEARTRISK_JWT_SECRET_FILE": str(tmp / "secret"), "HEARTRISK_SERVE_RATE": "1000000",
               "HEARTRISK_SERVE_BURST": "1000000", "HEARTRISK_SERVE_BATCH_MAX": str(BATCH_SIZE),
               "HEARTRISK_MODEL_DIR": str(settings.path(settings.model_dir))}
        event, batch_body = tmp / "event.json", tmp / "batch.json"
        with _server(env, 1, tmp) as url:
            say("warm-up")
            hey(url + "/v1/predict", event, token, 2.0, 8, None)
            fixed = []
            for rate in rates:
                runs = []
                for rep in range(reps):
                    say(f"fixed rate {rate} req/s, rep {rep + 1}/{reps}")
                    connections = max(2, math.ceil(rate / 200))  # 200 req/s per connection: no lock-step bursts
                    runs.append(hey(url + "/v1/predict", event, token, seconds, connections, rate))
                fixed.append({"target_rps": rate, **_median_run(runs)})
            most = {1: _most(url, event, batch_body, token, seconds, reps)}
        with _server(env, 2, tmp) as url:
            hey(url + "/v1/predict", event, token, 2.0, 8, None)
            most[2] = _most(url, event, batch_body, token, seconds, reps)
    base = baseline["events_per_second"]
    result = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "quick": quick,
        "seconds_per_run": seconds,
        "load_generator": "hey (Debian), on the same machine, loopback; bearer JWT HS256 on every request",
        "baseline_per_request_spark": baseline,
        "fixed_rate": fixed,
        "most": {f"{w}_worker{'s' if w > 1 else ''}": m for w, m in most.items()},
        "ratios": {
            f"{kind}_{w}w_over_per_request": m[kind]["events_per_second"] / base
            for w, m in most.items() for kind in ("single", "batch")
        },
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = datetime.now(timezone.utc).strftime("%Y-%m-%d") + ("-serve-quick" if quick else "-serve")
    path = results_dir / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    path.with_suffix(".md").write_text(render(result))
    return path


def _most(url: str, event: Path, batch_body: Path, token: str, seconds: float, reps: int) -> dict[str, Any]:
    say("unthrottled single predictions, 16 connections")
    single = _median_run([hey(url + "/v1/predict", event, token, seconds, 16, None) for _ in range(reps)])
    single["events_per_second"] = single["requests_per_second"]
    say(f"batch endpoint, {BATCH_SIZE} events per request, 4 connections")
    batch = _median_run([hey(url + "/v1/predict/batch", batch_body, token, seconds, 4, None) for _ in range(reps)])
    batch["events_per_second"] = batch["requests_per_second"] * BATCH_SIZE
    return {"single": single, "batch": batch}


@contextlib.contextmanager
def _server(env: dict[str, str], workers: int, tmp: Path) -> Iterator[str]:
    """``heartrisk serve`` with ``workers`` processes on a free port, until the block ends (SIGTERM)."""
    port = _free_port()
    say(f"heartrisk serve, {workers} process(es), port {port}")
    log = open(tmp / f"serve-{workers}.log", "wb")
    server = subprocess.Popen([str(Path(sys.executable).with_name("heartrisk")), "serve"], stdout=log,
                              stderr=subprocess.STDOUT,
                              env={**env, "HEARTRISK_SERVE_PORT": str(port), "HEARTRISK_SERVE_WORKERS": str(workers)})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            msg = f"heartrisk serve exited with {server.returncode} before it was ready"
            raise SetupError(msg)
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    msg = "heartrisk serve was not ready within 60 s"
    raise SetupError(msg)


def render(r: dict[str, Any]) -> str:
    """The Markdown report."""
    b = r["baseline_per_request_spark"]
    lines = [
        f"# heartrisk serve under load ({r['started']})",
        "",
        f"Machine: {describe_machine(r['machine'])}. Load: {r['load_generator']}. {r['seconds_per_run']:g} s per run, "
        f"median of {r['fixed_rate'][0]['reps']} runs.",
        "",
        "## Single predictions (`POST /v1/predict`) at fixed rates",
        "",
        "| target req/s | achieved req/s | p50 ms | p99 ms | max ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for f in r["fixed_rate"]:
        lines.append(f"| {f['target_rps']} | {f['requests_per_second']:,.0f} | {f['latency_ms_p50']:.2f} | "
                     f"{f['latency_ms_p99']:.2f} | {f['latency_ms_max']:.1f} | {f['non_2xx']} |")
    lines += [
        "",
        "## Most it sustains (unthrottled)",
        "",
        "| server processes | run | req/s | events/s | p50 ms | p99 ms | x per-request Spark |",
        "|---|---|---|---|---|---|---|",
    ]
    for workers, m in r["most"].items():
        w = workers.split("_")[0]
        for kind, label in (("single", "single, 16 connections"), ("batch", f"batch of {BATCH_SIZE}, 4 connections")):
            x = m[kind]
            lines.append(f"| {w} | {label} | {x['requests_per_second']:,.0f} | {x['events_per_second']:,.0f} | "
                         f"{x['latency_ms_p50']:.2f} | {x['latency_ms_p99']:.2f} | "
                         f"{x['events_per_second'] / b['events_per_second']:,.0f}x |")
    lines += [
        "",
        f"Baseline, the guide's per-request Spark scoring in this run: {b['events_per_second']:.2f} events/s, "
        f"p50 {b['latency_ms_p50']:.0f} ms ({b['events']:.0f} events).",
        "",
    ]
    return "\n".join(lines)
