//! Case files: parsing (serde-saphyr into serde types) and strict validation against the
//! rules of `policy-tests/FORMAT.md`. A case that breaks a rule is an error with a reason,
//! reported as a failure of that case.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::cluster::{Cluster, ClusterChanges};
use crate::dns::{Dns, RawDns};
use crate::matrix::Matrix;
use crate::proto::{Family, Probe};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    cluster: Option<ClusterChanges>,
    #[serde(default)]
    policies: Option<Vec<Value>>,
    #[serde(default)]
    expect: Option<Vec<RawExpect>>,
    #[serde(default)]
    steps: Option<Vec<RawStep>>,
    /// The DNS every step serves, unless a step gives its own.
    #[serde(default)]
    dns: Option<RawDns>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    cluster: Option<ClusterChanges>,
    #[serde(default)]
    policies: Option<Vec<Value>>,
    /// This step's DNS, in place of the case's.
    #[serde(default)]
    dns: Option<RawDns>,
    expect: Vec<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    probes: Vec<String>,
    #[serde(default)]
    family: Family,
    /// How name columns are resolved: `udp` (default) or `tcp`.
    #[serde(default)]
    resolve: Resolve,
    matrix: String,
}

/// The transport of the lookups a probe of a name makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolve {
    #[default]
    Udp,
    Tcp,
}

/// A validated case: always at least one step.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub steps: Vec<Step>,
}

/// The whole state in force during a step, and what must hold then.
#[derive(Debug, Clone)]
pub struct Step {
    pub cluster: Cluster,
    pub policies: Vec<Value>,
    /// The records the cluster DNS serves and the external addresses, when the step
    /// declares them (its own, or the case's).
    pub dns: Option<Dns>,
    pub expect: Vec<Expect>,
}

impl Step {
    /// Every Kubernetes object of the step: namespaces, nodes, pods, policies.
    pub fn objects(&self) -> Vec<Value> {
        let mut out = self.cluster.objects();
        out.extend(self.policies.iter().cloned());
        out
    }

    /// The objects nftpol reads in this build ([`crate::kinds::for_nftpol`]).
    pub fn nftpol_objects(&self) -> Vec<Value> {
        let mut out = self.objects();
        out.retain(crate::kinds::for_nftpol);
        out
    }
}

impl Case {
    /// Whether any step holds a ClusterNetworkPolicy.
    pub fn has_cnp(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.policies.iter().any(crate::kinds::is_cnp))
    }

    /// Whether any step holds a ClusterNetworkPolicy with `domainNames` peers, whose
    /// rules admit only what a node's DNS proxy learned.
    pub fn has_domain_names(&self) -> bool {
        self.steps.iter().flat_map(|s| &s.policies).any(|p| {
            crate::kinds::is_cnp(p)
                && ["ingress", "egress"].iter().any(|dir| {
                    p["spec"][dir].as_array().is_some_and(|rules| {
                        rules.iter().any(|r| {
                            r["to"].as_array().is_some_and(|peers| {
                                peers.iter().any(|peer| peer.get("domainNames").is_some())
                            })
                        })
                    })
                })
        })
    }

    /// The probes of names (cells whose column is a DNS name), over every step.
    pub fn name_cells(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.expect)
            .map(|e| {
                let cells = e
                    .matrix
                    .probed()
                    .filter(|&(_, c, _)| crate::dns::is_name(&e.matrix.cols[c]))
                    .count();
                cells * e.probes.len()
            })
            .sum()
    }
}

#[derive(Debug, Clone)]
pub struct Expect {
    pub probes: Vec<Probe>,
    pub family: Family,
    pub resolve: Resolve,
    pub matrix: Matrix,
}

/// A case that could not be read or breaks a rule: its name (the file stem when the
/// file says none) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCase {
    pub name: String,
    pub reason: String,
}

/// The case files a command-line path names: the file itself, or a folder's `*.yaml`
/// files sorted by name.
pub fn case_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    use anyhow::Context;
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading folder {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        Ok(files)
    } else if path.is_file() {
        Ok(vec![path.to_path_buf()])
    } else {
        anyhow::bail!("{}: no such file or folder", path.display())
    }
}

/// Reads and validates one case file.
pub fn load(path: &Path) -> Result<Case, BadCase> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).map_err(|e| BadCase {
        name: stem.clone(),
        reason: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text, &stem)
}

/// Parses and validates the text of a case whose file is named `stem.yaml`.
pub fn parse(text: &str, stem: &str) -> Result<Case, BadCase> {
    // YAML 1.2 booleans only: `{ns: y}` is the label value "y", not `true`.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let raw: RawCase = serde_saphyr::from_str_with_options(text, options).map_err(|e| BadCase {
        name: stem.to_string(),
        reason: format!(
            "not a valid case: {}",
            e.to_string().lines().next().unwrap_or("")
        ),
    })?;
    let name = raw.name.clone();
    validate(raw, stem).map_err(|reason| BadCase { name, reason })
}

fn validate(raw: RawCase, stem: &str) -> Result<Case, String> {
    if raw.name != stem {
        return Err(format!(
            "name {:?} differs from the file name {stem:?}.yaml",
            raw.name
        ));
    }
    let _ = raw.source;
    let raw_steps = match raw.steps {
        Some(steps) => {
            if raw.cluster.is_some() || raw.policies.is_some() || raw.expect.is_some() {
                return Err(
                    "a case with steps declares cluster, policies and expect in each step only"
                        .into(),
                );
            }
            if steps.is_empty() {
                return Err("steps is empty".into());
            }
            steps
        }
        None => vec![RawStep {
            description: None,
            cluster: raw.cluster,
            policies: raw.policies,
            dns: None,
            expect: raw.expect.ok_or("a case needs expect (or steps)")?,
        }],
    };
    let case_dns = raw.dns.as_ref().map(RawDns::validate).transpose()?;
    let many = raw_steps.len() > 1;
    let steps = raw_steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            validate_step(s, case_dns.as_ref()).map_err(|e| {
                if many {
                    format!("step {}: {e}", i + 1)
                } else {
                    e
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let _ = raw.description;
    Ok(Case {
        name: raw.name,
        steps,
    })
}

fn validate_step(raw: RawStep, case_dns: Option<&Dns>) -> Result<Step, String> {
    let _ = raw.description;
    let dns = match &raw.dns {
        Some(d) => Some(d.validate()?),
        None => case_dns.cloned(),
    };
    let cluster = Cluster::with_changes(&raw.cluster.unwrap_or_default())?;
    let policies = raw.policies.unwrap_or_default();
    let mut names = BTreeSet::new();
    for (i, p) in policies.iter().enumerate() {
        let field = format!("policies[{i}]");
        if crate::kinds::is_cnp(p) {
            let name = validate_cnp(p).map_err(|e| format!("{field}: {e}"))?;
            if !names.insert((String::new(), name.clone())) {
                return Err(format!(
                    "{field}: ClusterNetworkPolicy {name} declared twice"
                ));
            }
            continue;
        }
        let obj = nftpol::input::object_from_value(p.clone(), "case")
            .map_err(|e| format!("{field}: {e}"))?
            .ok_or_else(|| format!("{field}: not a NetworkPolicy (kind or apiVersion)"))?;
        if obj.kind() != nftpol::input::Kind::NetworkPolicy {
            return Err(format!(
                "{field}: a {} is not a policy; put namespaces and pods under cluster",
                obj.kind().name()
            ));
        }
        let ns = obj.namespace().unwrap_or_default();
        if !cluster.namespaces.contains_key(ns) {
            return Err(format!("{field}: namespace {ns} does not exist"));
        }
        if !names.insert((ns.to_string(), obj.name().to_string())) {
            return Err(format!(
                "{field}: policy {ns}/{} declared twice",
                obj.name()
            ));
        }
    }
    if raw.expect.is_empty() {
        return Err("expect is empty".into());
    }
    let expect = raw
        .expect
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            validate_expect(e, &cluster, dns.as_ref()).map_err(|err| format!("expect[{i}]: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Step {
        cluster,
        policies,
        dns,
        expect,
    })
}

/// What the harness itself checks of a ClusterNetworkPolicy (the rest is nftpol's, once
/// it reads them): its version, a name, and no namespace. Returns its name.
fn validate_cnp(p: &Value) -> Result<String, String> {
    let api = p.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !crate::kinds::CNP_API_VERSIONS.contains(&api) {
        return Err(format!(
            "apiVersion: a ClusterNetworkPolicy is {}, not {api:?}",
            crate::kinds::CNP_API_VERSIONS.join(" or ")
        ));
    }
    let name = match p.pointer("/metadata/name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err("metadata.name: a ClusterNetworkPolicy needs a name".into()),
    };
    if p.pointer("/metadata/namespace").is_some() {
        return Err(format!(
            "ClusterNetworkPolicy {name}: metadata.namespace: a ClusterNetworkPolicy is cluster-scoped and has none"
        ));
    }
    if !p.get("spec").is_some_and(Value::is_object) {
        return Err(format!("ClusterNetworkPolicy {name}: spec: missing"));
    }
    if crate::kinds::NFTPOL_READS_CNP {
        nftpol::input::object_from_value(p.clone(), "case").map_err(|e| e.to_string())?;
    }
    Ok(name)
}

fn validate_expect(raw: RawExpect, cluster: &Cluster, dns: Option<&Dns>) -> Result<Expect, String> {
    if raw.probes.is_empty() {
        return Err("probes is empty".into());
    }
    let probes = raw
        .probes
        .iter()
        .map(|p| p.parse::<Probe>())
        .collect::<Result<Vec<_>, _>>()?;
    let matrix = Matrix::parse(&raw.matrix)?;
    let family = raw.family;
    let names = check_names(&matrix, cluster, dns, family)?;
    for name in matrix.rows.iter().chain(&matrix.cols) {
        if names.contains(name) {
            continue;
        }
        if cluster.endpoint(name).is_none() {
            return Err(format!(
                "matrix names {name}, which is neither a pod of the cluster nor n1, n2, ext"
            ));
        }
    }
    for (r, c, _) in matrix.probed() {
        let (rn, cn) = (&matrix.rows[r], &matrix.cols[c]);
        if names.contains(cn) {
            continue;
        }
        let (from, to) = (cluster.endpoint(rn).unwrap(), cluster.endpoint(cn).unwrap());
        for (name, end) in [(rn, &from), (cn, &to)] {
            if end.addr(family).is_none() {
                return Err(format!(
                    "cell {rn} -> {cn} is probed but {name} has no {family} address (write -)"
                ));
            }
        }
        if let Some(p) = probes.iter().find(|p| !to.serves(**p)) {
            return Err(format!(
                "cell {rn} -> {cn} probes {p}, which {cn} does not serve"
            ));
        }
    }
    Ok(Expect {
        probes,
        family,
        resolve: raw.resolve,
        matrix,
    })
}

/// The matrix's name columns, checked: a step with `dns`, a name its records resolve to
/// an external address in `family`, probed from pods only (which have an address in
/// `family`). Every external address serves the six standard ports, so any probe does.
fn check_names(
    matrix: &Matrix,
    cluster: &Cluster,
    dns: Option<&Dns>,
    family: Family,
) -> Result<BTreeSet<String>, String> {
    let names: BTreeSet<String> = matrix
        .cols
        .iter()
        .filter(|c| crate::dns::is_name(c))
        .cloned()
        .collect();
    if let Some(r) = matrix.rows.iter().find(|r| crate::dns::is_name(r)) {
        return Err(format!("matrix row {r}: a name is probed, it never probes"));
    }
    if names.is_empty() {
        return Ok(names);
    }
    let dns = dns.ok_or_else(|| {
        format!(
            "matrix probes the name {}, but the step declares no dns",
            names.first().expect("not empty")
        )
    })?;
    for (r, c, _) in matrix.probed() {
        let (rn, cn) = (&matrix.rows[r], &matrix.cols[c]);
        if !names.contains(cn) {
            continue;
        }
        match cluster.endpoint(rn) {
            Some(crate::cluster::Endpoint::Pod(p)) if p.addr(family).is_some() => {}
            Some(crate::cluster::Endpoint::Pod(_)) => {
                return Err(format!(
                    "cell {rn} -> {cn} is probed but {rn} has no {family} address (write -)"
                ))
            }
            _ => return Err(format!("cell {rn} -> {cn}: only pods probe names")),
        }
        dns.check_probe(cn, family)
            .map_err(|e| format!("cell {rn} -> {cn}: {e}"))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny, namespace: x}
    spec: {podSelector: {}, policyTypes: [Ingress]}
"#;

    fn case(body: &str) -> Result<Case, BadCase> {
        parse(&format!("name: t\n{body}"), "t")
    }

    #[test]
    fn single_step_case() {
        let c = case(&format!(
            "{POLICY}expect:\n  - probes: [tcp/80, udp/81]\n    matrix: |\n      from\\to x/a n1\n      x/b X .\n      ext X -\n"
        ))
        .unwrap();
        assert_eq!(c.steps.len(), 1);
        let s = &c.steps[0];
        assert_eq!(s.expect[0].family, Family::V4);
        assert_eq!(s.expect[0].probes.len(), 2);
        assert_eq!(s.objects().len(), 15);
        assert!(!c.has_cnp());
    }

    #[test]
    fn label_values_stay_strings() {
        // `y` is a YAML 1.1 boolean; a label value must stay the string "y".
        let c = case(
            "policies:\n  - apiVersion: networking.k8s.io/v1\n    kind: NetworkPolicy\n    metadata: {name: p, namespace: x}\n    spec: {podSelector: {matchLabels: {ns: y}}}\nexpect:\n  - probes: [tcp/80]\n    matrix: |\n      from\\to x/a\n      x/b .\n",
        )
        .unwrap();
        assert_eq!(
            c.steps[0].policies[0]["spec"]["podSelector"]["matchLabels"]["ns"],
            "y"
        );
    }

    #[test]
    fn steps_case() {
        let text = r#"
name: t
steps:
  - expect: [{probes: [tcp/80], family: ipv6, matrix: "from\\to x/a\nx/b .\n"}]
  - cluster: {pods: {x/d: {node: n2, ip: ["fd00:10:244:2::44"]}}}
    expect: [{probes: [tcp/80], family: ipv6, matrix: "from\\to x/d\nx/b .\n"}]
"#;
        let c = parse(text, "t").unwrap();
        assert_eq!(c.steps.len(), 2);
        assert!(c.steps[1].cluster.pods.contains_key("x/d"));
        assert_eq!(c.steps[0].policies.len(), 0);
        assert!(!c.steps[0].cluster.pods.contains_key("x/d"));
    }

    #[test]
    fn cluster_network_policies_and_node_labels() {
        let cnp = |v: &str, n: &str| {
            format!("  - {{apiVersion: policy.networking.k8s.io/{v}, kind: ClusterNetworkPolicy, metadata: {{name: {n}}}, spec: {{tier: Admin, priority: 1}}}}\n")
        };
        let m = "    expect: [{probes: [tcp/80], matrix: \"from\\\\to x/a\\nx/b .\\n\"}]\n";
        let text = format!(
            "name: t\nsteps:\n  - policies:\n  {}  {}{m}  - cluster: {{nodes: {{n1: {{labels: {{zone: a}}}}}}}}\n{m}  - policies:\n  {}  {}{m}",
            cnp("v1alpha2", "p"),
            cnp("v1beta1", "q"),
            cnp("v1beta1", "p"),
            cnp("v1beta1", "p"),
        );
        let err = parse(&text, "t").unwrap_err();
        assert_eq!(
            err.reason,
            "step 3: policies[1]: ClusterNetworkPolicy p declared twice"
        );
        let text = text.replace("policies:\n    - {apiVersion: policy.networking.k8s.io/v1beta1, kind: ClusterNetworkPolicy, metadata: {name: p}, spec: {tier: Admin, priority: 1}}\n    - {apiVersion: policy.networking.k8s.io/v1beta1, kind: ClusterNetworkPolicy, metadata: {name: p}", "policies:\n    - {apiVersion: policy.networking.k8s.io/v1beta1, kind: ClusterNetworkPolicy, metadata: {name: p}, spec: {tier: Admin, priority: 1}}\n    - {apiVersion: policy.networking.k8s.io/v1beta1, kind: ClusterNetworkPolicy, metadata: {name: r}");
        let c = parse(&text, "t").unwrap();
        assert!(c.has_cnp());
        assert_eq!(c.steps[0].policies.len(), 2);
        let node = |s: &Step| {
            s.objects()
                .into_iter()
                .find(|o| o["kind"] == "Node" && o["metadata"]["name"] == "n1")
                .unwrap()
        };
        assert_eq!(node(&c.steps[1])["metadata"]["labels"]["zone"], "a");
        assert_eq!(
            node(&c.steps[1])["metadata"]["labels"]["kubernetes.io/hostname"],
            "n1"
        );
        assert!(node(&c.steps[0])["metadata"]["labels"]
            .get("zone")
            .is_none());
        let n = c.steps[0].nftpol_objects().len();
        let want = if crate::kinds::NFTPOL_READS_CNP {
            16
        } else {
            12
        };
        assert_eq!(n, want);
    }

    /// Every case file of the repository, and of the shared conformance folders beside
    /// it when they are there, parses and passes validation.
    #[test]
    fn every_case_file_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("cases")];
        for shared in ["examples", "examples-cnp"] {
            let d = root.join("../../shared/conformance").join(shared);
            if d.is_dir() {
                dirs.push(d);
            }
        }
        let (mut files, mut cnp) = (0, 0);
        for dir in dirs {
            for file in case_files(&dir).unwrap() {
                let case = load(&file).unwrap_or_else(|e| panic!("{}: {}", e.name, e.reason));
                files += 1;
                cnp += usize::from(case.has_cnp());
            }
        }
        assert!(files > 90, "only {files} case files");
        assert!(cnp >= 24, "only {cnp} cases with ClusterNetworkPolicies");
    }

    /// A `domainNames` policy's learned addresses live as long as the policy: one with
    /// the same name in two cases could carry the first case's into the second (FORMAT.md).
    #[test]
    fn domain_names_policies_are_named_for_one_case() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        let mut owner: std::collections::BTreeMap<String, String> = Default::default();
        let mut n = 0;
        for file in case_files(&dir).unwrap() {
            let case = load(&file).unwrap();
            for p in case.steps.iter().flat_map(|s| &s.policies) {
                if !(crate::kinds::is_cnp(p) && p.to_string().contains("\"domainNames\"")) {
                    continue;
                }
                let name = p["metadata"]["name"].as_str().unwrap().to_string();
                let first = owner.entry(name.clone()).or_insert(case.name.clone());
                assert_eq!(first, &case.name, "{name} in two cases");
                n += 1;
            }
        }
        assert!(n >= 8, "only {n} domainNames policies");
    }

    #[test]
    fn dns_and_name_probes() {
        let dns = "dns:\n  external: [198.51.100.10]\n  records: [{name: api.example.com, type: A, value: 198.51.100.10}]\n";
        let m = |col: &str, row: &str| {
            format!("expect:\n  - probes: [tcp/80]\n    resolve: tcp\n    matrix: |\n      from\\to {col}\n      {row} .\n")
        };
        let c = case(&format!("{dns}{}", m("API.example.com.", "x/a"))).unwrap();
        assert_eq!(c.name_cells(), 1);
        assert_eq!(c.steps[0].expect[0].resolve, Resolve::Tcp);
        assert_eq!(c.steps[0].dns.as_ref().unwrap().external.len(), 1);
        for (body, want) in [
            (m("api.example.com", "x/a"), "declares no dns"),
            (
                format!("{dns}{}", m("b.example.com", "x/a")),
                "does not know b.example.com",
            ),
            (
                format!("{dns}{}", m("api.example.com", "ext")),
                "only pods probe names",
            ),
            (
                format!(
                    "{dns}{}",
                    m("api.example.com", "x/a").replace("tcp/80]", "tcp/80]\n    family: ipv6")
                ),
                "no AAAA record",
            ),
            (
                format!("dns: {{external: [10.0.0.1]}}\n{}", m("x/b", "x/a")),
                "dns.external[0]",
            ),
        ] {
            let err = case(&body).unwrap_err();
            assert!(err.reason.contains(want), "{body}\n=> {}", err.reason);
        }
        let steps = format!(
            "{dns}steps:\n  - expect: [{{probes: [tcp/80], matrix: \"from\\\\to api.example.com\\nx/a .\\n\"}}]\n  - dns: {{}}\n    expect: [{{probes: [tcp/80], matrix: \"from\\\\to x/b\\nx/a .\\n\"}}]\n"
        );
        let c = case(&steps).unwrap();
        assert!(c.steps[0].dns.as_ref().unwrap().knows("api.example.com"));
        assert!(!c.steps[1].dns.as_ref().unwrap().knows("api.example.com"));
    }

    #[test]
    fn bad_cases() {
        let m = "    matrix: |\n      from\\to x/a\n      x/b .\n";
        for (body, want) in [
            ("expect:\n  - probes: [tcp/80]\n    matrix: |\n      from\\to x/q\n      x/b .\n".to_string(), "neither a pod"),
            (format!("expect:\n  - probes: [tcp/8080]\n{m}"), "does not serve"),
            (format!("expect:\n  - probes: [tcp80]\n{m}"), "bad probe"),
            (format!("expect:\n  - probes: []\n{m}"), "probes is empty"),
            (format!("expect:\n  - probes: [tcp/80]\n    family: ipv5\n{m}"), "not a valid case"),
            (format!("bogus: 1\nexpect:\n  - probes: [tcp/80]\n{m}"), "not a valid case"),
            (format!("cluster: {{pods: {{x/a: {{ip: [10.244.1.11]}}}}}}\nexpect:\n  - probes: [tcp/80]\n    family: ipv6\n{m}"), "no ipv6 address"),
            (format!("cluster: {{pods: {{x/d: {{node: n1, ip: [10.244.2.9]}}}}}}\nexpect:\n  - probes: [tcp/80]\n{m}"), "not a usable address"),
            ("policies: []\n".to_string(), "needs expect"),
            (format!("policies: [{{kind: Pod, apiVersion: v1, metadata: {{name: p, namespace: x}}}}]\nexpect:\n  - probes: [tcp/80]\n{m}"), "not a policy"),
            (format!("policies: [{{kind: NetworkPolicy, apiVersion: networking.k8s.io/v1, metadata: {{name: p}}}}]\nexpect:\n  - probes: [tcp/80]\n{m}"), "metadata.namespace"),
            ("steps: []\n".to_string(), "steps is empty"),
            (format!("policies: [{{kind: ClusterNetworkPolicy, apiVersion: policy.networking.k8s.io/v1, metadata: {{name: p}}, spec: {{}}}}]\nexpect:\n  - probes: [tcp/80]\n{m}"), "policies[0]: apiVersion"),
            (format!("policies: [{{kind: ClusterNetworkPolicy, apiVersion: policy.networking.k8s.io/v1beta1, metadata: {{name: p, namespace: x}}, spec: {{}}}}]\nexpect:\n  - probes: [tcp/80]\n{m}"), "policies[0]: ClusterNetworkPolicy p: metadata.namespace"),
            (format!("policies: [{{kind: ClusterNetworkPolicy, apiVersion: policy.networking.k8s.io/v1beta1, metadata: {{}}, spec: {{}}}}]\nexpect:\n  - probes: [tcp/80]\n{m}"), "metadata.name"),
        ] {
            let err = case(&body).unwrap_err();
            assert_eq!(err.name, "t");
            assert!(err.reason.contains(want), "{body}\n=> {}", err.reason);
        }
        let err = parse("name: other\nexpect: []\n", "t").unwrap_err();
        assert!(
            err.reason.contains("differs from the file name"),
            "{}",
            err.reason
        );
        let err = parse("[1, 2]", "file").unwrap_err();
        assert_eq!(err.name, "file");
    }
}
