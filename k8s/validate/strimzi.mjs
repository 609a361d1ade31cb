// Validate Strimzi resources against the Strimzi CRD schemas (compiled by kubernetes-models).
// Input on stdin: a JSON list of objects. Output on stdout: a JSON list, one entry per
// object: {"kind", "name", "errors": [...]} (errors empty when valid).
import { readFileSync } from "node:fs";

const objects = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const obj of objects) {
  const [group, version] = obj.apiVersion.split("/");
  const entry = { kind: obj.kind, name: obj.metadata?.name, errors: [] };
  try {
    const mod = await import(`@kubernetes-models/strimzi-kafka-operator/${group}/${version}/${obj.kind}`);
    const model = new mod[obj.kind](obj);
    model.validate();
  } catch (e) {
    entry.errors.push(String(e.message ?? e));
  }
  out.push(entry);
}
process.stdout.write(JSON.stringify(out));
