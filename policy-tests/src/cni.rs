//! Pods attached the way a node attaches them: by running the reference CNI plugins
//! (Debian's `containernetworking-plugins`, `/usr/lib/cni`) with a network config written
//! here and the CNI environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME`, `CNI_PATH`), as kubelet's runtime does.
//!
//! ```text
//! node namespace --(ip netns exec)--> /usr/lib/cni/loopback   ADD lo
//!                                    /usr/lib/cni/bridge|ptp ADD eth0  -> static IPAM
//! ```
//!
//! This module owns the config's shape and the plugin calls. It does not decide which
//! pods exist or build nodes (`topology.rs` does), and never touches the namespaces
//! itself beyond what the plugins do.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Where Debian installs the plugins.
pub const DEFAULT_DIR: &str = "/usr/lib/cni";

/// The CNI spec version of the configs written here (plugins 1.1 speak it).
const CNI_VERSION: &str = "1.0.0";

/// The network name in every config; it only scopes plugin state, and static IPAM keeps
/// none.
const NETWORK: &str = "nftpol-test";

/// The main plugin that gives a pod its `eth0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Main {
    /// `bridge`: a veth into `cni0`, the gateway addresses on the bridge.
    Bridge { mtu: u32 },
    /// `ptp`: a veth per pod, the gateway on the node's end, a /32 (/128) route to the pod.
    Ptp,
}

impl Main {
    fn binary(self) -> &'static str {
        match self {
            Main::Bridge { .. } => "bridge",
            Main::Ptp => "ptp",
        }
    }
}

/// What a pod's attachment is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The pod's addresses, pinned through static IPAM.
    pub ips: Vec<IpAddr>,
    /// The node's number, which names the gateways (`10.244.N.1`, `fd00:10:244:N::1`).
    pub node: u8,
    /// The MAC of the pod's `eth0`, for plugins that take one (`runtimeConfig.mac`).
    pub mac: String,
}

/// The plugin binaries, found and executable.
#[derive(Debug, Clone)]
pub struct Plugins {
    dir: PathBuf,
    main: Main,
}

impl Plugins {
    /// The plugins `main` needs in `dir`, or the reason they cannot be used (which binary
    /// is missing), for the report.
    pub fn find(dir: &Path, main: Main) -> std::result::Result<Plugins, String> {
        for name in [main.binary(), "static", "loopback"] {
            let path = dir.join(name);
            let executable = std::fs::metadata(&path).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            });
            if !executable {
                return Err(format!(
                    "CNI plugin {} is missing (install containernetworking-plugins)",
                    path.display()
                ));
            }
        }
        Ok(Plugins {
            dir: dir.to_path_buf(),
            main,
        })
    }

    /// ADD: `lo` through `loopback`, then `eth0` through the main plugin.
    pub fn add(&self, node_ns: &str, pod_ns: &str, pod: &Attachment) -> Result<()> {
        self.call("ADD", node_ns, pod_ns, "lo", &loopback_config())?;
        self.call("ADD", node_ns, pod_ns, "eth0", &config(self.main, pod))?;
        Ok(())
    }

    /// DEL, in the reverse order of ADD. The pod's namespace must still exist.
    pub fn del(&self, node_ns: &str, pod_ns: &str, pod: &Attachment) -> Result<()> {
        self.call("DEL", node_ns, pod_ns, "eth0", &config(self.main, pod))?;
        self.call("DEL", node_ns, pod_ns, "lo", &loopback_config())?;
        Ok(())
    }

    /// Runs one plugin inside the node's namespace (the "host" side, for the plugin),
    /// with the pod's namespace as `CNI_NETNS`.
    fn call(
        &self,
        command: &str,
        node_ns: &str,
        pod_ns: &str,
        ifname: &str,
        config: &Value,
    ) -> Result<()> {
        let plugin = config["type"].as_str().expect("configs name their type");
        let what = format!("CNI {command} {plugin} {ifname} of {pod_ns}");
        let mut child = Command::new("ip")
            .args(["netns", "exec", node_ns])
            .arg(self.dir.join(plugin))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod_ns)
            .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{what}: cannot start it"))?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(config.to_string().as_bytes())
            .with_context(|| format!("{what}: writing the network config"))?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("{what}: waiting"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                plugin_error(&out.stdout, &out.stderr)
            );
        }
        Ok(())
    }
}

/// A plugin reports errors as JSON on stdout (`{"code":..,"msg":..,"details":..}`).
fn plugin_error(stdout: &[u8], stderr: &[u8]) -> String {
    if let Ok(err) = serde_json::from_slice::<Value>(stdout) {
        let msg = err["msg"].as_str().unwrap_or_default();
        let details = err["details"].as_str().unwrap_or_default();
        if !msg.is_empty() {
            return format!("code {}: {msg} {details}", err["code"])
                .trim()
                .to_string();
        }
    }
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::from_utf8_lossy(stdout).trim().to_string()
    } else {
        text.to_string()
    }
}

fn loopback_config() -> Value {
    json!({"cniVersion": CNI_VERSION, "name": "lo", "type": "loopback"})
}

/// The network config for one pod: the main plugin with static IPAM holding exactly the
/// pod's addresses (the pod CIDR's prefix length, the node's gateway) and a default
/// route per family.
pub fn config(main: Main, pod: &Attachment) -> Value {
    let n = pod.node;
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    for ip in &pod.ips {
        let (len, gateway, default) = match ip {
            IpAddr::V4(_) => (24, format!("10.244.{n}.1"), "0.0.0.0/0"),
            IpAddr::V6(_) => (64, format!("fd00:10:244:{n}::1"), "::/0"),
        };
        addresses.push(json!({"address": format!("{ip}/{len}"), "gateway": gateway}));
        routes.push(json!({"dst": default}));
    }
    let ipam = json!({"type": "static", "addresses": addresses, "routes": routes});
    match main {
        Main::Bridge { mtu } => json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": false,
            "mtu": mtu,
            // What a runtime passes for the `mac` capability: a pod that reuses a deleted
            // pod's address also reuses its MAC, so no neighbour cache goes stale.
            "runtimeConfig": {"mac": pod.mac},
            "ipam": ipam,
        }),
        Main::Ptp => json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "ptp",
            "ipMasq": false,
            "mtu": 1500,
            "ipam": ipam,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Attachment {
        Attachment {
            ips: vec![
                "10.244.2.33".parse().unwrap(),
                "fd00:10:244:2::33".parse().unwrap(),
            ],
            node: 2,
            mac: "02:00:0a:f4:02:21".into(),
        }
    }

    #[test]
    fn bridge_config_pins_the_addresses() {
        let c = config(Main::Bridge { mtu: 1450 }, &pod());
        assert_eq!(c["type"], "bridge");
        assert_eq!(c["bridge"], "cni0");
        assert_eq!(c["isGateway"], true);
        assert_eq!(c["ipMasq"], false);
        assert_eq!(c["mtu"], 1450);
        assert_eq!(c["runtimeConfig"]["mac"], "02:00:0a:f4:02:21");
        let a = &c["ipam"]["addresses"];
        assert_eq!(c["ipam"]["type"], "static");
        assert_eq!(a[0]["address"], "10.244.2.33/24");
        assert_eq!(a[0]["gateway"], "10.244.2.1");
        assert_eq!(a[1]["address"], "fd00:10:244:2::33/64");
        assert_eq!(a[1]["gateway"], "fd00:10:244:2::1");
        assert_eq!(c["ipam"]["routes"][1]["dst"], "::/0");
    }

    #[test]
    fn ptp_config_and_single_stack() {
        let mut p = pod();
        p.ips.truncate(1);
        let c = config(Main::Ptp, &p);
        assert_eq!(c["type"], "ptp");
        assert!(c.get("runtimeConfig").is_none());
        assert_eq!(c["ipam"]["addresses"].as_array().unwrap().len(), 1);
        assert_eq!(c["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    }

    #[test]
    fn missing_plugins_are_named() {
        let err = Plugins::find(Path::new("/nonexistent-cni"), Main::Ptp).unwrap_err();
        assert!(err.contains("/nonexistent-cni/ptp"), "{err}");
    }

    #[test]
    fn plugin_errors_read_from_json() {
        let e = plugin_error(br#"{"code":7,"msg":"bad","details":"why"}"#, b"");
        assert_eq!(e, "code 7: bad why");
        assert_eq!(plugin_error(b"", b"boom\n"), "boom");
    }
}
