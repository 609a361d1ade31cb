"""The SparkSession, built once from the settings.

ANSI mode is off on purpose: under ANSI a malformed value (an overflowing cast, a
bad timestamp) raises inside the query and would stop it; bad data must become
a dead letter instead. Validation checks every value explicitly.
"""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from stream.config import Settings
from stream.contract.codes import MAX_MESSAGE_BYTES
from stream.local.jvm import spark_jars

logger = logging.getLogger(__name__)

# Avro allocates whatever length a message declares (up to 2 GiB by default): one frame that claims a
# 2 GB string fills the heap, and the query dies on it again at every restart. No field of a message
# that passes the size check (MAX_MESSAGE_BYTES) can be longer than the message, so Avro's own limits
# are set to that; a frame over them is CORRUPT_AVRO. On the driver and on every executor.
AVRO_LIMITS = " ".join(
    f"-Dorg.apache.avro.limits.{what}.maxLength={MAX_MESSAGE_BYTES}" for what in ("string", "bytes", "collectionItems")
)
JVM_OPTIONS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


def spark_conf(settings: Settings, with_connectors: bool = True) -> dict[str, str]:
    """The Spark configuration the product runs with."""
    conf = {
        "spark.master": settings.spark_master,
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.sql.streaming.stopGracefullyOnShutdown": "true",
        "spark.driver.extraJavaOptions": "-Dlog4j2.level=warn",
        "spark.executor.extraJavaOptions": "",
        "spark.sql.execution.arrow.pyspark.enabled": "false",
        # HotSpot does not JIT a method over 8,000 bytes of bytecode; above this limit Spark
        # splits whole-stage codegen instead of running one huge method in the interpreter
        "spark.sql.codegen.hugeMethodLimit": "8000",
        "spark.sql.warehouse.dir": str(settings.path(".spark-warehouse")),
    }
    if settings.spark_master.startswith(("spark://127.0.0.1:", "spark://localhost:")):
        # a local standalone cluster (heartrisk cluster up): its executors call the driver back on loopback
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = "127.0.0.1"
    if with_connectors:
        conf["spark.jars"] = spark_jars(settings.path(settings.jvm_dir))
    conf.update(settings.spark_conf)
    for key in JVM_OPTIONS:  # kept under a user's own options (a later -D of the same name wins)
        conf[key] = f"{AVRO_LIMITS} {conf[key]}".strip()
    return conf


def _quiet(spark: SparkSession, logger_name: str) -> None:
    """Raise one JVM logger to ERROR (in local mode the executors share the driver's JVM)."""
    try:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        level = jvm.org.apache.logging.log4j.Level.ERROR
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(logger_name, level)
    except Exception:  # logging is cosmetic; never fail start-up over it
        logger.debug("could not quiet %s", logger_name, exc_info=True)


def get_spark(settings: Settings, app_name: str = "heartrisk", with_connectors: bool = True) -> SparkSession:
    """Build (or reuse) the SparkSession."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    for k, v in spark_conf(settings, with_connectors).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    _quiet(spark, "org.apache.spark.sql.avro.AvroSerializer")  # warns per task that nullable != non-null Avro
    logger.info('event="spark session ready" version="%s" master="%s"', spark.version, settings.spark_master)
    return spark
