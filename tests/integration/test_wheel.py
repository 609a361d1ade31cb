"""The wheel installs anywhere: built, installed into a fresh venv outside the repository, it scores from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from stream.app.batch import score_files
from stream.config import PROJECT_ROOT, Settings
from tests.integration.test_scorer import GUIDE_EXAMPLE

pytestmark = pytest.mark.integration

BUNDLED = ("schemas/patient_event.v1.schema.json", "models/heart_lr/CURRENT", "data/heart_disease.csv",
           "jvm/spark/pom.xml", "jvm/functions/src/io/heartrisk/spark/DriftCounts.java")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{cmd[:3]} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc.stdout


def _predictions(folder: Path) -> list[dict]:
    return [json.loads(line) for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_the_wheel_in_a_fresh_venv_outside_the_repository_scores_the_guide_example(tmp_path, spark, model):
    settings = Settings()
    # built from a copy, as from a source archive: an in-tree build would leave build/ in the checkout
    src = tmp_path / "src"
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "stream", "schemas", "models", "jvm", "data"):
        copy = shutil.copytree if (PROJECT_ROOT / part).is_dir() else shutil.copy2
        copy(PROJECT_ROOT / part, src / part, **({"symlinks": True, "ignore": shutil.ignore_patterns("__pycache__")}
                                                  if copy is shutil.copytree else {}))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], tmp_path)
    (wheel,) = dist.glob("heartrisk_stream-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert {f"stream/_bundled/{f}" for f in BUNDLED} <= names, "the resources travel in the wheel"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).strip())
    # the dependencies (pyspark alone is 400 MB) come from this venv; the project itself only from the wheel
    (site / "_heartrisk_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], tmp_path)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTRISK_")}
    env["HEARTRISK_JVM_DIR"] = str(settings.path(settings.jvm_dir))  # the resolved connectors, not Maven again
    where = _run([str(venv / "bin" / "python"), "-c", "import stream, stream.paths as p; "
                  "print(stream.__file__); print(p.PROJECT_ROOT); print(p.IN_SOURCE_TREE)"], work, env).split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "stream" / "_bundled") and where[2] == "False"

    event = {"event_id": "guide-1", "patient_id": "guide-patient", "event_time": "2026-11-27T08:00:00Z",
             **GUIDE_EXAMPLE}
    (work / "guide.jsonl").write_text(json.dumps(event) + "\n")
    _run([str(venv / "bin" / "heartrisk"), "score-batch", "--input", "guide.jsonl", "--output", "out"], work, env)
    (installed,) = _predictions(work / "out" / "predictions")

    score_files(spark, settings, model, work / "guide.jsonl", tmp_path / "here")
    (here,) = _predictions(tmp_path / "here" / "predictions")
    assert installed["event_id"] == "guide-1" and installed["model_version"] == model.version
    assert installed["probability"] == here["probability"] and installed["risk_level"] == here["risk_level"]
    assert installed["event_time"] == "2026-11-27T08:00:00.000Z"
    assert {k: v for k, v in installed.items() if "_at" not in k} == {k: v for k, v in here.items() if "_at" not in k}

    # the Java sources travel too: an installed copy builds them outside the repository, against the resolved
    # connectors (the exactly-once sink needs their kafka-clients)
    _run([str(venv / "bin" / "python"), "-c", "import os; from pathlib import Path; from stream.local.jvm import "
          "build_functions; print(build_functions(Path('jvm-cache'), None, Path(os.environ['HEARTRISK_JVM_DIR']) / "
          "'spark'))"], work, env)
    assert (work / "jvm-cache" / "functions" / "heartrisk-functions.jar").is_file()
