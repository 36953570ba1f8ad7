//! Every manifest in `manifests/` validates, strictly (unknown fields rejected), against the
//! OpenAPI schemas of a current Kubernetes release, with `kubernetes-validate` (PyPI; .ci/run
//! installs it). Without the tool the test says SKIP and why.

use std::path::Path;
use std::process::Command;

#[test]
fn manifests_validate_against_kubernetes_schemas() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected the RBAC and DaemonSet manifests"
    );
    let probe = Command::new("kubernetes-validate")
        .arg("--version")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP manifests_validate_against_kubernetes_schemas: kubernetes-validate is not installed (pip install kubernetes-validate)");
        return;
    }
    // The release the code is built against (k8s-openapi v1_34) and the newest one.
    for version in ["1.34.0", "1.37.0"] {
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{version}: {text}");
        for kind in [
            "serviceaccount/nftpol",
            "clusterrole/nftpol",
            "clusterrolebinding/nftpol",
            "daemonset/nftpol",
        ] {
            assert!(
                text.contains(&format!("passed for resource {kind}")),
                "{version}: {kind} not validated:\n{text}"
            );
        }
    }
}
