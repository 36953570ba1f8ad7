//! Host settings enforcement depends on: bridged pod traffic reaches the inet forward hook
//! only through br_netfilter with `bridge-nf-call-iptables` (and `-ip6tables`) on. Without
//! it, pods on one bridge (flannel, the bridge CNI) talk past every rule.

use std::path::Path;
use std::process::Command;

const SYSCTLS: [&str; 2] = [
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrNetfilter {
    /// Loaded and both sysctls are 1.
    Enabled,
    /// Something is missing; the text says what and what it means.
    Disabled(String),
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Makes sure br_netfilter is loaded and on (loading the module and setting the sysctls
/// if it can), and says what it found.
pub fn ensure_br_netfilter() -> BrNetfilter {
    if !Path::new(SYSCTLS[0]).exists() {
        let _ = Command::new("modprobe").arg("br_netfilter").status();
    }
    if !Path::new(SYSCTLS[0]).exists() {
        return BrNetfilter::Disabled(
            "br_netfilter is not loaded and could not be loaded: traffic between pods on the same \
             Linux bridge is NOT filtered (routed CNIs are unaffected)"
                .into(),
        );
    }
    let mut off = Vec::new();
    for path in SYSCTLS {
        if read(path).as_deref() != Some("1") && std::fs::write(path, "1").is_err()
            || read(path).as_deref() != Some("1")
        {
            off.push(path.trim_start_matches("/proc/sys/").replace('/', "."));
        }
    }
    if off.is_empty() {
        BrNetfilter::Enabled
    } else {
        BrNetfilter::Disabled(format!(
            "{} is 0 and could not be set: bridged traffic of that family is NOT filtered",
            off.join(", ")
        ))
    }
}
