"""k8s/: every overlay renders with kustomize, and what it renders would be accepted.

- Kubernetes' own kinds: validated strictly by ``kubernetes-validate`` (the API's schemas).
- ``SparkApplication``: against the CRD of the Spark operator (v2.3.0, from its Go module),
  unknown fields refused as ``kubectl apply --validate=strict`` would.
- Strimzi's ``Kafka``, ``KafkaNodePool``, ``KafkaTopic``, ``KafkaUser``: against Strimzi's CRD
  schemas, as compiled by kubernetes-models (npm), run with node.
- Then the fields the product relies on, one by one, and the references between objects.

``make setup`` puts the schemas in ``.k8s-schemas/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from stream.cli import build_parser
from stream.config import PROJECT_ROOT, SPECS, load_settings

K8S = PROJECT_ROOT / "k8s"
SCHEMAS = PROJECT_ROOT / ".k8s-schemas"
OVERLAYS = ("local", "production")
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "PersistentVolumeClaim",
         "PodDisruptionBudget", "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "SparkApplication"}
OPERATOR_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "SparkApplication"}
BUILTIN_GROUPS = {"v1", "rbac.authorization.k8s.io", "policy"}
KNOWN_ENV = {s.env for s in SPECS.values()}


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl renders k8s/ with its built-in kustomize (make setup checks for it)"
    out = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(overlay: str, kind: str, name: str | None = None) -> dict[str, Any]:
    (obj,) = [d for d in rendered(overlay) if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return obj


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_every_kind_in_one_namespace(overlay):
    docs = rendered(overlay)
    assert {d["kind"] for d in docs} == KINDS
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"heartrisk"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/instance"] == overlay for d in docs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_kinds_are_valid_against_the_api_schemas(overlay):
    builtin = [d for d in rendered(overlay) if d["apiVersion"].split("/")[0] in BUILTIN_GROUPS]
    assert {d["kind"] for d in builtin} == KINDS - OPERATOR_KINDS
    for version in KUBERNETES_VERSIONS:
        for d in builtin:
            kubernetes_validate.validate(d, version, strict=True)  # raises on an invalid object
    pvc = json.loads(json.dumps(one(overlay, "PersistentVolumeClaim")))
    pvc["spec"]["accessMode"] = pvc["spec"].pop("accessModes")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pvc, KUBERNETES_VERSIONS[-1], strict=True)


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD's structural schema does not declare (the API server would prune them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict) and "properties" in schema:
        out = [f"{path}.{k}" for k in obj if k not in schema["properties"]]
        for k, v in obj.items():
            if k in schema["properties"]:
                out += _unknown_fields(v, schema["properties"][k], f"{path}.{k}")
        return out
    if isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [f for k, v in obj.items() for f in _unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")]
    if isinstance(obj, list) and "items" in schema:
        return [f for i, v in enumerate(obj) for f in _unknown_fields(v, schema["items"], f"{path}[{i}]")]
    return []


@cache
def spark_application_schema() -> dict[str, Any]:
    crd_file = SCHEMAS / "sparkapplications.crd.yaml"
    assert crd_file.exists(), "the Spark operator's CRD comes with `make setup`"
    crd = yaml.safe_load(crd_file.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return dict(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_spark_application_is_valid_against_the_operators_crd(overlay):
    app = one(overlay, "SparkApplication")
    schema = spark_application_schema()
    jsonschema.Draft7Validator(schema).validate(app)
    assert _unknown_fields(app, schema) == []


def test_the_crd_check_would_catch_a_mistake():
    app = json.loads(json.dumps(one("local", "SparkApplication")))
    app["spec"]["driver"]["cores"] = "one"
    app["spec"]["executor"]["instance"] = 2
    with pytest.raises(jsonschema.ValidationError, match="'one' is not of type 'integer'"):
        jsonschema.Draft7Validator(spark_application_schema()).validate(app)
    assert _unknown_fields(app, spark_application_schema()) == [".spec.executor.instance"]


def _strimzi_errors(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node and (SCHEMAS / "node_modules").is_dir(), "node and Strimzi's schemas come with `make setup`"
    out = subprocess.run([node, str(SCHEMAS / "strimzi.mjs")], input=json.dumps(objects), capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_strimzi_resources_are_valid_against_strimzis_crds(overlay):
    objects = [d for d in rendered(overlay) if d["apiVersion"].startswith("kafka.strimzi.io/")]
    results = _strimzi_errors(objects)
    assert sorted(r["kind"] for r in results) == ["Kafka", "KafkaNodePool", "KafkaTopic", "KafkaTopic", "KafkaTopic",
                                                  "KafkaUser"]
    assert [r for r in results if r["errors"]] == []
    broken = json.loads(json.dumps(one(overlay, "KafkaTopic", "patient-events")))
    broken["spec"]["replicas"] = "3"
    (result,) = _strimzi_errors([broken])
    assert result["errors"] and "replicas must be integer" in result["errors"][0], "the check catches a mistake"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_replicates_every_write_to_three_brokers(overlay):
    pool = one(overlay, "KafkaNodePool")
    kafka = one(overlay, "Kafka")
    assert pool["spec"]["replicas"] == 3 and set(pool["spec"]["roles"]) == {"broker", "controller"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    conf = kafka["spec"]["kafka"]["config"]
    assert (conf["default.replication.factor"], conf["min.insync.replicas"]) == (3, 2)
    assert (conf["transaction.state.log.replication.factor"], conf["transaction.state.log.min.isr"]) == (3, 2)
    cm = one(overlay, "ConfigMap", "heartrisk-config")["data"]
    topics = [d for d in rendered(overlay) if d["kind"] == "KafkaTopic"]
    assert {t["metadata"]["name"] for t in topics} == {cm[k] for k in ("HEARTRISK_INPUT_TOPIC",
                                                                       "HEARTRISK_OUTPUT_TOPIC", "HEARTRISK_DLQ_TOPIC")}
    for t in topics:
        assert t["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert t["spec"]["replicas"] == 3 and t["spec"]["config"]["min.insync.replicas"] == 2
        assert t["spec"]["partitions"] == int(cm["HEARTRISK_PARTITIONS"])
    host, _, port = cm["HEARTRISK_BOOTSTRAP_SERVERS"].rpartition(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    assert int(port) in {listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]}


def test_production_kafka_enforces_the_scorers_acls_on_its_only_listener():
    kafka = one("production", "Kafka")["spec"]["kafka"]
    assert kafka["authorization"] == {"type": "simple"}
    (listener,) = kafka["listeners"]
    assert listener["tls"] is True and listener["authentication"] == {"type": "scram-sha-512"}
    cm = one("production", "ConfigMap", "heartrisk-config")["data"]
    assert cm["HEARTRISK_BOOTSTRAP_SERVERS"].endswith(f":{listener['port']}")
    user = one("production", "KafkaUser")
    acls = {(a["resource"].get("name"), tuple(a["operations"])) for a in user["spec"]["authorization"]["acls"]}
    assert acls == {(cm["HEARTRISK_INPUT_TOPIC"], ("Read", "Describe")),
                    (cm["HEARTRISK_OUTPUT_TOPIC"], ("Write", "Describe")),
                    (cm["HEARTRISK_DLQ_TOPIC"], ("Write", "Describe")),
                    (cm["HEARTRISK_QUERY_NAME"], ("Read", "Describe")),  # the lag group, named after the query
                    (None, ("IdempotentWrite",))}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scorer_runs_heartrisk_with_the_exporter_as_a_driver_sidecar(overlay):
    app = one(overlay, "SparkApplication")["spec"]
    parser = build_parser()
    assert app["mainApplicationFile"] == "local:///opt/heartrisk/driver.py"
    assert "COPY k8s/driver.py /opt/heartrisk/driver.py" in (K8S / "Dockerfile").read_text()
    parser.parse_args(app["arguments"])  # a real command: exits on an unknown one
    (sidecar,) = app["driver"]["sidecars"]
    parser.parse_args(sidecar["args"])
    assert sidecar["args"] == ["exporter"]
    images = {app["image"], sidecar["image"]}
    assert len(images) == 1, "driver, executors and the sidecar run the same image"
    if overlay == "production":
        assert images == {"registry.example.org/heartrisk/heartrisk-stream:0.1.0"}
    (driver_tpl,) = app["driver"]["template"]["spec"]["containers"]
    assert driver_tpl["name"] == one(overlay, "SparkApplication")["spec"]["sparkConf"][
        "spark.kubernetes.driver.podTemplateContainerName"]
    probe = driver_tpl["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and probe["port"] in {p["containerPort"] for p in sidecar["ports"]}
    for role in ("driver", "executor"):
        ctx = app[role]["podSecurityContext"]
        assert ctx["fsGroup"] == ctx["runAsUser"] == 185 and ctx["runAsNonRoot"] is True, "the image's user 185"
    assert app["driver"]["terminationGracePeriodSeconds"] >= 60, "time for the batch in flight to commit"
    assert app["restartPolicy"]["type"] == "Always"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay):
    docs = rendered(overlay)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    app = one(overlay, "SparkApplication")["spec"]
    assert ("ServiceAccount", app["driver"]["serviceAccount"]) in names
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["name"] == app["driver"]["serviceAccount"]
    assert ("Role", binding["roleRef"]["name"]) in names
    volumes = {v["name"]: v for v in app["volumes"]}
    strimzi = {"heartrisk-scorer", "heartrisk-kafka-cluster-ca-cert"}  # Secrets Strimzi makes for the KafkaUser, CA
    for c in (app["driver"], app["driver"]["sidecars"][0], app["executor"]):
        for mount in c.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
                assert mount["mountPath"] == one(overlay, "ConfigMap", "heartrisk-config")["data"][
                    "HEARTRISK_CHECKPOINT_DIR"]
            elif "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            elif volume["secret"]["secretName"] == DEAD_LETTER_KEYS:
                assert overlay == "production", "made by hand (k8s/README.md), for production's encrypted dead letters"
            else:
                assert volume["secret"]["secretName"] in strimzi and ("KafkaUser", "heartrisk-scorer") in names
        for ref in c.get("envFrom", []) if c is not app["executor"] else []:
            if "configMapRef" in ref:
                assert ("ConfigMap", ref["configMapRef"]["name"]) in names
            else:
                assert ref["secretRef"]["name"] == _secret_example()["metadata"]["name"]
    pdb = one(overlay, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= app["executor"]["labels"].items()
    assert not pdb["selector"]["matchLabels"].items() <= app["driver"]["labels"].items(), "executors only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configmap_sets_only_known_settings_and_they_parse(overlay):
    data = one(overlay, "ConfigMap", "heartrisk-config")["data"]
    assert set(data) <= KNOWN_ENV, set(data) - KNOWN_ENV
    settings = load_settings(environ=data)
    assert settings.spark_master.startswith("k8s://")


def _secret_example() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "base" / "secret.example.yaml").read_text()))


def test_the_secret_example_sets_only_known_settings_and_is_not_deployed():
    secret = _secret_example()
    assert set(secret["stringData"]) <= KNOWN_ENV
    kust = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kust["resources"], "a filled-in secret is applied by hand, never from git"


DEAD_LETTER_KEYS = "heartrisk-dead-letter-keys"


def test_production_encrypts_dead_letters_with_keys_mounted_where_driver_and_executors_read_them():
    cm = one("production", "ConfigMap", "heartrisk-config")["data"]
    settings = load_settings(environ=cm)
    assert settings.dead_letter_payload == "encrypted"
    keys = Path(settings.dead_letter_key_file)
    app = one("production", "SparkApplication")["spec"]
    volumes = {v["name"]: v for v in app["volumes"]}
    for role in ("driver", "executor"):  # the executors encrypt (a JVM function reads the file)
        mounts = {m["mountPath"]: m for m in app[role]["volumeMounts"]}
        mount = mounts[str(keys.parent)]
        assert volumes[mount["name"]]["secret"]["secretName"] == DEAD_LETTER_KEYS and mount["readOnly"] is True
    assert keys.name == "keys"
    assert "HEARTRISK_DEAD_LETTER_PAYLOAD" not in one("local", "ConfigMap", "heartrisk-config")["data"]
    assert DEAD_LETTER_KEYS not in {d["metadata"]["name"] for d in rendered("production")}, "never from git"
    assert f"create secret generic {DEAD_LETTER_KEYS} --from-file=keys=" in (K8S / "README.md").read_text()


def test_production_gives_the_scorer_its_kafka_credentials_file_and_what_it_names():
    """The credentials file is mounted where the settings say; its password and CA files are mounted too."""
    from stream.credentials import KafkaCredentials

    cm = one("production", "ConfigMap", "heartrisk-config")["data"]
    path = Path(cm["HEARTRISK_KAFKA_SECURITY_FILE"])
    creds_map = one("production", "ConfigMap", "heartrisk-kafka-credentials")
    content = json.loads(creds_map["data"][path.name])
    app = one("production", "SparkApplication")["spec"]
    volumes = {v["name"]: v for v in app["volumes"]}
    driver = {m["mountPath"]: volumes[m["name"]] for m in app["driver"]["volumeMounts"]}
    executor = {m["mountPath"]: volumes[m["name"]] for m in app["executor"]["volumeMounts"]}
    assert driver[str(path.parent)]["configMap"]["name"] == "heartrisk-kafka-credentials"
    password, ca = Path(content["password_file"]), Path(content["ca_file"])
    assert driver[str(password.parent)]["secret"]["secretName"] == content["username"] == "heartrisk-scorer"
    assert password.name == "password" and ca.name == "ca.crt", "the keys of Strimzi's user and CA Secrets"
    assert driver[str(ca.parent)] == executor[str(ca.parent)], "the executors' Java clients need the CA file"
    assert str(password.parent) not in executor, "the password stays on the driver"
    (user,) = [d for d in rendered("production") if d["kind"] == "KafkaUser"]
    assert user["spec"]["authentication"]["type"] == content["sasl_mechanism"].lower()
    listener = one("production", "Kafka")["spec"]["kafka"]["listeners"][0]
    assert content["security_protocol"] == "SASL_SSL" and listener["tls"] is True
    # the file is what the product reads: with the mounted files in place, both dialects come out
    root = Path(tempfile.mkdtemp())
    for f, text in ((password, "pw"), (ca, "CA")):
        (root / f.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / f.relative_to("/")).write_text(text)
    local = {**content, "password_file": str(root / password.relative_to("/")),
             "ca_file": str(root / ca.relative_to("/"))}
    (root / "kafka.json").write_text(json.dumps(local))
    creds = KafkaCredentials.load(root / "kafka.json")
    assert "ScramLoginModule required" in creds.java()["sasl.jaas.config"]
    assert creds.librdkafka()["sasl.username"] == "heartrisk-scorer"
