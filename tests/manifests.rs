//! Every manifest in `manifests/` validates, strictly (unknown fields rejected), against the
//! OpenAPI schemas of a current Kubernetes release, with `kubernetes-validate` (PyPI;
//! .ci/deps installs it). The test is `#[ignore]`d with that reason, so a plain `cargo test`
//! lists it as ignored instead of passing it unrun; `.ci/test` runs it with
//! `--include-ignored`, and run that way without the tool it fails, saying how to install it.

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs kubernetes-validate (pip install kubernetes-validate==1.37.0, or .ci/deps)"]
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
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "manifests_validate_against_kubernetes_schemas needs the kubernetes-validate command \
         (pip install kubernetes-validate==1.37.0, or run .ci/deps as root): {probe:?}"
    );
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
