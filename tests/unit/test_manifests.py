"""k8s/ manifests parse, reference each other consistently, and set only real settings."""

from __future__ import annotations

import yaml

from stream.config import PROJECT_ROOT, SPECS, load_settings

K8S = PROJECT_ROOT / "k8s"


def _docs():
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return out


def test_every_manifest_parses_and_kustomization_lists_existing_files():
    docs = _docs()
    assert len(docs) >= 8
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res


def test_configmap_sets_only_known_settings_and_they_parse():
    (cm,) = [d for _, d in _docs() if d["kind"] == "ConfigMap"]
    known = {s.env for s in SPECS.values()}
    assert set(cm["data"]) <= known, set(cm["data"]) - known
    settings = load_settings(environ=cm["data"])
    assert settings.spark_conf["spark.kubernetes.authenticate.driver.serviceAccountName"] == "heartrisk-spark"


def test_references_resolve():
    docs = _docs()
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs if "metadata" in d}
    (dep,) = [d for _, d in docs if d["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    assert ("ServiceAccount", spec["serviceAccountName"]) in names
    assert dep["spec"]["replicas"] == 1, "one driver per checkpoint"
    for c in spec["containers"]:
        for ref in c["envFrom"]:
            if "configMapRef" in ref:
                assert ("ConfigMap", ref["configMapRef"]["name"]) in names
            else:
                assert ref["secretRef"]["name"] == "heartrisk-kafka"
    for vol in spec["volumes"]:
        assert ("PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"]) in names
