"""JVM artifacts: resolve them with Maven, find them at run time.

Three folders, each from a pom in ``jvm/``:

* ``.jvm/kafka/``: the Apache Kafka broker, run in KRaft mode by ``heartrisk kafka up``;
* ``.jvm/spark/``: Spark's Kafka and Avro connectors, passed to Spark as ``spark.jars``,
  minus every jar whose artifact pyspark already ships;
* ``.jvm/registry/``: Apicurio Registry's runnable distribution (a Confluent-compatible
  schema registry), unpacked; run by ``heartrisk registry up``.

And one built here: ``.jvm/functions/heartrisk-functions.jar``, the project's own Spark
functions and the exactly-once sink (``jvm/functions/src``), compiled with ``javac`` against
the very jars pyspark ships and the connectors' kafka-clients, so they always match the Spark
that runs them; passed to Spark with the connectors.

``python -m stream.local.jvm`` (called by ``make setup``) resolves and builds all four; a
second run with unchanged poms, sources and pyspark does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from stream.config import PROJECT_ROOT, Settings
from stream.errors import SetupError

logger = logging.getLogger(__name__)

CLASSPATHS = ("kafka", "spark", "registry")
# folders that hold one unpacked distribution archive instead of a classpath
ARCHIVES = ("registry",)
_VERSION_RE = re.compile(r"-\d[\w.\-]*\.jar$")


def artifact_name(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``."""
    return _VERSION_RE.sub("", Path(jar).name)


def pyspark_jars_dir() -> Path:
    """The ``jars/`` folder of the installed pyspark."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def java_major_version() -> int:
    """Major version of ``java`` on PATH.

    Raises:
        SetupError: no java, or one older than 17.
    """
    java = shutil.which("java")
    if java is None:
        msg = "java not found: install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
        raise SetupError(msg)
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        msg = f"could not read the Java version from `java -version`: {out.stderr.strip()[:200]}"
        raise SetupError(msg)
    major = int(m.group(1))
    if major == 1 and m.group(2):
        major = int(m.group(2))
    if major < 17:
        msg = f"Java {major} found, Spark 4 and Kafka 4 need Java 17 or newer: install openjdk-17"
        raise SetupError(msg)
    return major


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def resolve(name: str, jvm_dir: Path, poms_dir: Path | None = None) -> Path:
    """Resolve one classpath into ``jvm_dir/name`` unless its pom is unchanged.

    Returns:
        The folder holding the jars.

    Raises:
        SetupError: Maven missing or failing.
    """
    poms_dir = poms_dir or PROJECT_ROOT / "jvm"
    pom = poms_dir / name / "pom.xml"
    target = jvm_dir / name
    stamp = target / ".pom.sha256"
    digest = _pom_digest(pom)
    if stamp.exists() and stamp.read_text().strip() == digest and any(target.glob("*.jar")):
        logger.info('classpath="%s" status="up to date" jars=%d', name, len(list(target.glob("*.jar"))))
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "mvn not found: install Apache Maven (Debian: apt-get install maven)"
        raise SetupError(msg)
    with tempfile.TemporaryDirectory(prefix=f"heartrisk-{name}-") as tmp:
        goal = ["dependency:copy"] if name in ARCHIVES else ["dependency:copy-dependencies", "-DincludeScope=runtime"]
        cmd = [mvn, "-q", "-B", "-f", str(pom), *goal, f"-DoutputDirectory={tmp}"]
        print(f"resolving {name} from Maven Central ...", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            msg = f"Maven could not resolve {pom}: {tail}"
            raise SetupError(msg)
        jars = sorted(Path(tmp).glob("*.jar"))
        if name == "spark":
            shipped = {artifact_name(j.name) for j in pyspark_jars_dir().glob("*.jar")}
            jars = [j for j in jars if artifact_name(j.name) not in shipped]
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if name in ARCHIVES:
            jars = _unpack(sorted(Path(tmp).glob("*.tar.gz")), target)
        for j in jars:
            shutil.copy2(j, target / j.name)
    stamp.write_text(digest + "\n")
    what = "unpacked" if name in ARCHIVES else f"{len(jars)} jars"
    print(f"{name}: {what} in {target}", file=sys.stderr)
    return target


def _unpack(archives: list[Path], target: Path) -> list[Path]:
    """Unpack the distribution archives into ``target``; returns no jars to copy.

    Raises:
        SetupError: no archive was downloaded.
    """
    if not archives:
        msg = f"Maven downloaded no archive for {target.name}"
        raise SetupError(msg)
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return []


def classpath_jars(name: str, jvm_dir: Path) -> list[Path]:
    """The jars of one resolved classpath.

    Raises:
        SetupError: the classpath was never resolved.
    """
    jars = sorted((jvm_dir / name).glob("*.jar"))
    if not jars:
        msg = f"no jars in {jvm_dir / name}: run `make setup` first"
        raise SetupError(msg)
    return jars


FUNCTIONS_JAR = "functions/heartrisk-functions.jar"


def build_functions(jvm_dir: Path, sources_dir: Path | None = None, connectors_dir: Path | None = None) -> Path:
    """Compile the project's Spark functions into ``jvm_dir/functions`` unless sources and pyspark are unchanged.

    ``connectors_dir`` (default ``jvm_dir/spark``) holds the resolved connectors: the exactly-once sink
    compiles against their kafka-clients.

    Raises:
        SetupError: no javac, no connectors, or the sources do not compile.
    """
    import pyspark

    src = sources_dir or PROJECT_ROOT / "jvm" / "functions" / "src"
    files = sorted(src.rglob("*.java"))
    connectors = connectors_dir or jvm_dir / "spark"
    if not list(connectors.glob("kafka-clients-*.jar")):
        msg = f"no kafka-clients jar in {connectors}: resolve the spark classpath first (make setup)"
        raise SetupError(msg)
    h = hashlib.sha256(pyspark.__version__.encode())
    for j in sorted(connectors.glob("*.jar")):
        h.update(j.name.encode() + b"\0")
    for f in files:
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes())
    jar = jvm_dir / FUNCTIONS_JAR
    stamp = jar.with_suffix(".sha256")
    if jar.exists() and stamp.exists() and stamp.read_text().strip() == h.hexdigest():
        logger.info('classpath="functions" status="up to date"')
        return jar
    javac = shutil.which("javac")
    if javac is None:
        msg = "javac not found: install a JDK 17 or newer (Debian: apt-get install openjdk-17-jdk-headless)"
        raise SetupError(msg)
    print(f"building {jar.name} ({len(files)} sources) ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="heartrisk-functions-") as tmp:
        cmd = [javac, "--release", "17", "-Xlint:all,-path,-serial", "-Werror",
               "-cp", f"{pyspark_jars_dir()}/*:{connectors}/*", "-d", tmp, *map(str, files)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            msg = f"javac could not build {src}: " + "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise SetupError(msg)
        jar.parent.mkdir(parents=True, exist_ok=True)
        partial = jar.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
            for c in sorted(Path(tmp).rglob("*.class")):
                z.write(c, c.relative_to(tmp).as_posix())
        partial.replace(jar)
    stamp.write_text(h.hexdigest() + "\n")
    print(f"functions: {jar}", file=sys.stderr)
    return jar


def spark_jars(jvm_dir: Path) -> str:
    """Comma-separated ``spark.jars`` value: the Kafka and Avro connectors, and the project's functions.

    Raises:
        SetupError: a classpath was never resolved, or the functions never built.
    """
    jars = classpath_jars("spark", jvm_dir)
    functions = jvm_dir / FUNCTIONS_JAR
    if not functions.exists():
        msg = f"{functions} is missing: run `make setup` first"
        raise SetupError(msg)
    return ",".join(str(j) for j in [*jars, functions])


def main(argv: list[str] | None = None) -> int:
    """Resolve every folder (the `make setup` step)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m stream.local.jvm",
        description="Resolve the Kafka broker, the Spark connectors and the schema registry from Maven Central, "
        "and build the project's Spark functions.",
    )
    parser.add_argument("--jvm-dir", default=str(Settings().path(".jvm")), help="cache folder (default: .jvm)")
    args = parser.parse_args(argv)
    try:
        java_major_version()
        for name in CLASSPATHS:
            resolve(name, Path(args.jvm_dir))
        build_functions(Path(args.jvm_dir))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
