//! kubectl-style dumps of a synthetic cluster, for benchmarks and tests of the input side:
//! one `kind: List` as `kubectl get ns,pods,networkpolicies -A -o yaml` (or `-o json`)
//! prints it, each object dressed as the API server returns it (uid, resourceVersion,
//! timestamps, the last-applied annotation, managedFields, a pod's full spec and status),
//! so that the dump has the size and shape of a real one. Deterministic.

use std::io::{self, Write};

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// Writes `objects` (as [`crate::synth::cluster`] makes them) as one List.
pub fn write_list(objects: &[Value], format: Format, out: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Json => {
            out.write_all(b"{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n")?;
            for (i, obj) in objects.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer_pretty(&mut *out, &dressed(obj, i))?;
            }
            out.write_all(b"\n    ],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n")
        }
        Format::Yaml => {
            out.write_all(b"apiVersion: v1\nitems:\n")?;
            let mut buf = String::new();
            for (i, obj) in objects.iter().enumerate() {
                buf.clear();
                yaml_item(&dressed(obj, i), &mut buf);
                out.write_all(buf.as_bytes())?;
            }
            out.write_all(b"kind: List\nmetadata:\n  resourceVersion: \"\"\n")
        }
    }
}

/// The object as the API server returns it.
fn dressed(obj: &Value, i: usize) -> Value {
    let mut v = obj.clone();
    let applied = obj.to_string();
    let kind = obj["kind"].as_str().unwrap_or("");
    let time = format!(
        "2026-11-{:02}T{:02}:{:02}:{:02}Z",
        1 + i % 28,
        i % 24,
        i % 60,
        (i / 60) % 60
    );
    let meta = &mut v["metadata"];
    meta["uid"] = json!(format!("{:08x}-1111-4222-8333-{:012x}", i, i * 7919));
    meta["resourceVersion"] = json!(format!("{}", 100_000 + i));
    meta["creationTimestamp"] = json!(time);
    meta["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied + "\n"});
    let spec_fields = match kind {
        "Pod" => {
            json!({"f:containers": {"k:{\"name\":\"main\"}": {".": {}, "f:image": {}, "f:imagePullPolicy": {},
            "f:name": {}, "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {}}},
            "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}})
        }
        _ => json!({"f:podSelector": {}, "f:policyTypes": {}, "f:ingress": {}, "f:egress": {}}),
    };
    let mut managed = vec![
        json!({"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                                    "f:labels": {".": {}, "f:app": {}, "f:tier": {}, "f:version": {}}},
                     "f:spec": spec_fields},
        "manager": "kubectl-client-side-apply", "operation": "Update", "time": time}),
    ];
    if kind == "Pod" {
        managed.push(json!({"apiVersion": "v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}},
                                                      "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
                                      "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.0.0.1\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}},
            "manager": "kubelet", "operation": "Update", "subresource": "status", "time": time}));
        dress_pod(&mut v, &time, i);
    }
    v["metadata"]["managedFields"] = Value::Array(managed);
    v
}

fn dress_pod(v: &mut Value, time: &str, i: usize) {
    let spec = &mut v["spec"];
    let c = &mut spec["containers"][0];
    c["imagePullPolicy"] = json!("IfNotPresent");
    c["resources"] =
        json!({"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}});
    c["terminationMessagePath"] = json!("/dev/termination-log");
    c["terminationMessagePolicy"] = json!("File");
    c["env"] = json!([{"name": "LOG_LEVEL", "value": "info"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}]);
    c["volumeMounts"] = json!([{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-x7k2p", "readOnly": true}]);
    for (k, val) in [
        ("dnsPolicy", json!("ClusterFirst")),
        ("enableServiceLinks", json!(true)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
        ("priority", json!(0)),
        ("restartPolicy", json!("Always")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
        ("serviceAccount", json!("default")),
        ("serviceAccountName", json!("default")),
        ("terminationGracePeriodSeconds", json!(30)),
        (
            "tolerations",
            json!([{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                               {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}]),
        ),
        (
            "volumes",
            json!([{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}]}}]),
        ),
    ] {
        spec[k] = val;
    }
    let status = &mut v["status"];
    let cond = |t: &str| json!({"lastProbeTime": null, "lastTransitionTime": time, "status": "True", "type": t});
    status["conditions"] = json!([
        cond("PodReadyToStartContainers"),
        cond("Initialized"),
        cond("Ready"),
        cond("ContainersReady"),
        cond("PodScheduled")
    ]);
    status["containerStatuses"] = json!([{"containerID": format!("containerd://{:064x}", i),
        "image": "registry.example/app:1", "imageID": format!("registry.example/app@sha256:{:064x}", i * 31),
        "lastState": {}, "name": "main", "ready": true, "restartCount": 0, "started": true,
        "state": {"running": {"startedAt": time}},
        "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-x7k2p", "readOnly": true, "recursiveReadOnly": "Disabled"}]}]);
    status["qosClass"] = json!("Burstable");
    status["startTime"] = json!(time);
}

/// One item of the List's `items`, as go-yaml (kubectl) writes it.
fn yaml_item(v: &Value, out: &mut String) {
    out.push_str("- ");
    yaml_map_body(v.as_object().expect("an object"), 2, true, out);
}

fn yaml_map_body(
    map: &serde_json::Map<String, Value>,
    indent: usize,
    first_inline: bool,
    out: &mut String,
) {
    for (n, (k, val)) in map.iter().enumerate() {
        if n > 0 || !first_inline {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        yaml_scalar(k, out);
        out.push(':');
        match val {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                yaml_map_body(m, indent + 2, false, out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                for item in a {
                    out.extend(std::iter::repeat_n(' ', indent));
                    out.push_str("- ");
                    match item {
                        Value::Object(m) if !m.is_empty() => {
                            yaml_map_body(m, indent + 2, true, out)
                        }
                        other => {
                            yaml_value(other, out);
                            out.push('\n');
                        }
                    }
                }
            }
            other => {
                out.push(' ');
                yaml_value(other, out);
                out.push('\n');
            }
        }
    }
}

fn yaml_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => yaml_scalar(s, out),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// Plain when YAML reads it back as the same string, else double-quoted (JSON escapes are
/// YAML escapes).
fn yaml_scalar(s: &str, out: &mut String) {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        )
        && s.parse::<f64>().is_err();
    if plain {
        out.push_str(s);
    } else {
        out.push_str(&Value::String(s.to_string()).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{cluster, Params};

    /// Both formats read back as the objects they were made from, and the dressing is
    /// ignored by the reader.
    #[test]
    fn dumps_read_back_as_their_objects() {
        let objects = cluster(&Params::new(30, 10));
        let want: Vec<_> = objects
            .iter()
            .map(|v| {
                crate::input::object_from_value(v.clone(), "d")
                    .unwrap()
                    .unwrap()
                    .data
            })
            .collect();
        for format in [Format::Yaml, Format::Json] {
            let mut out = Vec::new();
            write_list(&objects, format, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("managedFields") && text.contains("last-applied-configuration"));
            let got: Vec<_> = crate::input::parse_str(&text, "d")
                .unwrap_or_else(|e| panic!("{format:?}: {e}"))
                .into_iter()
                .map(|o| o.data)
                .collect();
            assert_eq!(got.len(), want.len(), "{format:?}");
            for (g, w) in got.iter().zip(&want) {
                use crate::input::ObjectData::{NetworkPolicy, Pod};
                match (g, w) {
                    (Pod(g), Pod(w)) => {
                        assert_eq!(g.metadata.labels, w.metadata.labels, "{format:?}");
                        assert_eq!(g.metadata.name, w.metadata.name, "{format:?}");
                        let ips = |p: &k8s_openapi::api::core::v1::Pod| {
                            p.status.as_ref().unwrap().pod_ips.clone()
                        };
                        assert_eq!(ips(g), ips(w), "{format:?}");
                        assert_eq!(
                            g.spec.as_ref().unwrap().containers[0].ports,
                            w.spec.as_ref().unwrap().containers[0].ports
                        );
                    }
                    (NetworkPolicy(g), NetworkPolicy(w)) => {
                        assert_eq!(g.spec, w.spec, "{format:?}")
                    }
                    (g, w) => assert_eq!(std::mem::discriminant(g), std::mem::discriminant(w)),
                }
            }
        }
    }
}
