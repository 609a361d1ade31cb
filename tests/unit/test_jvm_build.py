"""The project's Spark function is built by javac against pyspark's own jars, once, with clear errors."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from stream.config import PROJECT_ROOT, Settings
from stream.errors import SetupError
from stream.local.jvm import FUNCTIONS_JAR, build_functions, spark_jars

SOURCES = PROJECT_ROOT / "jvm" / "functions" / "src"
CONNECTORS = Settings().path(Settings().jvm_dir) / "spark"  # resolved by make setup: kafka-clients, for the sink


def test_the_functions_jar_is_built_once_and_rebuilt_when_a_source_changes(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SOURCES, src)
    jar = build_functions(tmp_path / "jvm", src, CONNECTORS)
    assert jar == tmp_path / "jvm" / FUNCTIONS_JAR
    with zipfile.ZipFile(jar) as z:
        assert {"io/heartrisk/spark/DriftCounts.class", "io/heartrisk/spark/TransactionalSink.class"} <= set(
            z.namelist())
    built = jar.stat().st_mtime_ns
    again = build_functions(tmp_path / "jvm", src, CONNECTORS)
    assert again.stat().st_mtime_ns == built, "unchanged sources: not rebuilt"

    java = next(src.rglob("DriftCounts.java"))
    java.write_text(java.read_text().replace("buf[0]++;", "buf[0]++ // broken"))
    with pytest.raises(SetupError, match=r"(?s)javac could not build .*DriftCounts\.java"):
        build_functions(tmp_path / "jvm", src, CONNECTORS)
    assert jar.stat().st_mtime_ns == built, "a failed build leaves the last good jar in place"


def test_spark_jars_names_the_functions_jar_and_says_what_to_do_without_it(tmp_path):
    (tmp_path / "spark").mkdir()
    (tmp_path / "spark" / "spark-sql-kafka-0-10_2.13-4.2.0.jar").write_bytes(b"")
    with pytest.raises(SetupError, match="run `make setup` first"):
        spark_jars(tmp_path)
    (tmp_path / FUNCTIONS_JAR).parent.mkdir()
    (tmp_path / FUNCTIONS_JAR).write_bytes(b"")
    assert spark_jars(tmp_path).split(",")[-1] == str(tmp_path / FUNCTIONS_JAR)


def test_without_the_connectors_the_build_says_to_resolve_them_first(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match=r"no kafka-clients jar in .*empty: resolve the spark classpath first"):
        build_functions(tmp_path / "jvm", SOURCES, tmp_path / "empty")
