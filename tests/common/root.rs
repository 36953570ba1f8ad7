//! The guard of the tests that need root (network namespaces, nftables, netlink,
//! conntrack). Those tests carry `#[ignore = "needs root: ..."]`, so a plain `cargo test`
//! lists them as ignored with the reason instead of reporting `ok` for a test that did not
//! run; `.ci/test` (root) runs them with `-- --include-ignored`. Run that way without root,
//! or without the `nft` binary, the guard fails the test with the reason: it never passes
//! a test that did not run. Included with `#[path = "common/root.rs"]`; it must not hold
//! anything but the guard.
#![allow(dead_code)]

use std::process::Command;

/// Fails `test` unless the process runs with effective uid 0.
pub fn require_root(test: &str) {
    let euid = effective_uid();
    assert_eq!(
        euid,
        Some(0),
        "{test} needs root (network namespaces, nftables, netlink); it is #[ignore]d for \
         that reason: run it as root, or without --ignored / --include-ignored"
    );
}

/// Fails `test` unless it runs as root and the `nft` binary can be run.
pub fn require_root_and_nft(test: &str) {
    require_root(test);
    let nft = Command::new("nft").arg("--version").output();
    assert!(
        nft.as_ref().is_ok_and(|o| o.status.success()),
        "{test} needs the `nft` binary (Debian package nftables, see .ci/deps): {nft:?}"
    );
}

/// The effective uid from /proc/self/status ("Uid: real effective saved fs"): no libc
/// call, so the guard needs neither `unsafe` nor the `netlink` feature.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}
