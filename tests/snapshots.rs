//! Snapshot tests: the script rendered for every `examples/*.yaml`, for every node and for
//! the whole cluster, must equal the file in `tests/snapshots/` byte for byte. After a
//! deliberate change, regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test snapshots` and
//! review the diff. Every rendered script is also checked by `nft -c -f` (needs root: that test
//! is `#[ignore]`d, see common/root.rs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use nftpol::index::Index;

#[path = "common/root.rs"]
mod needs_root;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no examples");
    v
}

fn load(path: &Path) -> Index {
    let text = std::fs::read_to_string(path).unwrap();
    Index::from_objects(nftpol::input::parse_str(&text, &path.display().to_string()).unwrap())
        .unwrap()
}

fn scripts() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in examples() {
        let index = load(&path);
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let nodes: BTreeSet<String> = index.pods().filter_map(|p| p.node.clone()).collect();
        out.push((
            format!("{stem}.all.nft"),
            nftpol::script::render(&nftpol::compile(&index, None)),
        ));
        for node in nodes {
            let script = nftpol::script::render(&nftpol::compile(&index, Some(&node)));
            out.push((format!("{stem}.{node}.nft"), script));
        }
    }
    out
}

#[test]
fn scripts_match_snapshots() {
    let dir = root().join("tests/snapshots");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut failures = Vec::new();
    for (name, script) in scripts() {
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &script).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == script => {}
            Ok(_) => failures.push(format!("{name}: differs (UPDATE_SNAPSHOTS=1 to accept)")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs root: nft -c opens a netlink socket (CAP_NET_ADMIN)"]
fn scripts_pass_nft_check() {
    needs_root::require_root_and_nft("scripts_pass_nft_check");
    let nft = "nft";
    let tmp = tempfile::tempdir().unwrap();
    for (name, script) in scripts() {
        let path = tmp.path().join(&name);
        std::fs::write(&path, &script).unwrap();
        let out = Command::new(nft)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft -c -f {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
