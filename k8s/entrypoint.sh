#!/usr/bin/env bash
# The image's entrypoint. Spark on Kubernetes starts its executor pods from this image
# with the argument `executor` (and, in cluster mode, the driver with `driver`): those
# go to Spark, as the entrypoint of Spark's own images does; anything else is a
# heartrisk command (`score`, `exporter`, ...).
set -euo pipefail

spark_home() {
  if [ -n "${SPARK_HOME:-}" ]; then echo "$SPARK_HOME"; return; fi
  python3 -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'
}

case "${1:-}" in
  executor)
    shift
    home="$(spark_home)"
    # Spark passes executor JVM options as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ... in order
    java_opts=()
    while IFS= read -r opt; do [ -n "$opt" ] && java_opts+=("$opt"); done < <(
      env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | sed 's/^[^=]*=//')
    exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY:?set by Spark}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
      -cp "${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}$home/jars/*" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL:?set by Spark}" \
      --executor-id "${SPARK_EXECUTOR_ID:?set by Spark}" \
      --cores "${SPARK_EXECUTOR_CORES:?set by Spark}" \
      --app-id "${SPARK_APPLICATION_ID:?set by Spark}" \
      --hostname "${SPARK_EXECUTOR_POD_IP:?set by Spark}" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME:-}" \
      "$@"
    ;;
  driver)
    shift
    home="$(spark_home)"
    exec "$home/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?set by Spark}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  *)
    exec heartrisk "$@"
    ;;
esac
