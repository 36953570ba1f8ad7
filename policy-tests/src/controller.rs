//! The `controller` backend: nftpol's controller, unmodified, programs each node.
//!
//! One fake API server serves the case's objects over the real list/watch protocol; one
//! controller per node (the library's `controller::run`, as `nftpol run` runs it) watches
//! it and programs the node's network namespace through netlink. Each step's changes
//! reach the server through a real `kubectl` (create, replace, label, delete; see
//! [`crate::kubectl`]), so a real client drives the controller. A step is "programmed"
//! once every node's live table equals what the compiler gives for that node. The
//! controller watches ClusterNetworkPolicies and Nodes too, so it judges CNP cases. Each
//! runs the DNS proxy for `domainNames` rules, as `nftpol run` does by default, trusting
//! the harness's cluster DNS (`--dns-server`), so it judges the cases that probe names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use fake_apiserver::FakeApiServer;
use ipnet::IpNet;
use nftpol::controller::dns_node::DnsConfig;
use nftpol::controller::{self, dataplane::NetlinkDataplane};
use nftpol::index::Index;
use nftpol::ruleset::DnsSteering;

use crate::backend::Backend;
use crate::kubectl::{self, Kubectl};
use crate::objects::Objects;

struct Node {
    /// Where its `/metrics` listen (127.0.0.1).
    metrics_port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The namespace's inode: a rebuilt topology has new namespaces under the same names,
    /// and a controller holding the old one must make way for a new one.
    netns_inode: u64,
}

fn inode(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

pub struct Controller {
    rt: tokio::runtime::Runtime,
    server: FakeApiServer,
    kubectl: Kubectl,
    /// Holds the kubeconfig and kubectl's discovery cache; removed on drop.
    dir: PathBuf,
    nodes: HashMap<String, Node>,
    /// What the server holds, to send only differences (as the API server would).
    served: Objects,
    /// `--keep-established` for every node's controller.
    keep_established: bool,
    /// The DNS proxy every node's controller runs, or why it cannot run here.
    dns: Result<DnsConfig, String>,
    /// Every node's ruleset options: verdict logs for every new connection
    /// (`--log-allowed`), with a rate limit no matrix reaches, for [`crate::verdicts`].
    options: nftpol::ruleset::Options,
}

/// `nftpol_conntrack_entries_cut_total` from the controller's `/metrics` on `port`.
fn entries_cut(port: u16) -> Option<u64> {
    metric(port, "nftpol_conntrack_entries_cut_total")
}

/// The unlabelled sample `name` from the controller's `/metrics` on `port`.
fn metric(port: u16, name: &str) -> Option<u64> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// `nftpol run`'s DNS proxy as every node's controller runs it: its defaults (port,
/// mark, route table, minimum TTL), trusting the cluster DNS ([`crate::dns::SERVER_V4`]
/// and its IPv6 address) as `--dns-server` would.
fn dns_config() -> DnsConfig {
    DnsConfig {
        steering: DnsSteering {
            servers: vec![
                IpNet::from(IpAddr::V4(crate::dns::SERVER_V4)),
                IpNet::from(IpAddr::V6(crate::dns::SERVER_V6)),
            ],
            ..DnsSteering::default()
        },
        ttl: nftpol::fqdn::Ttl::default(),
        route_table: DNS_ROUTE_TABLE,
    }
}

/// The DNS proxy's configuration if it starts in a namespace of its own (policy routing,
/// listeners, learner), else why not, with every cause: a controller whose proxy cannot
/// start exits, so the controllers then run without one (`--no-dns-proxy`) and the cases
/// that probe names are skipped with this reason rather than every case failing.
fn dns_proxy_starts() -> Result<DnsConfig, String> {
    let name = format!("{}dnsprobe", crate::netns::run_prefix());
    let made = crate::netns::ip_batch(None, &[format!("netns add {name}")])
        .and_then(|()| crate::netns::ip_batch(Some(&name), &["link set lo up".to_string()]));
    let result = made.map_err(|e| format!("{e:#}")).and_then(|()| {
        let path = PathBuf::from(format!("/run/netns/{name}"));
        nftpol::controller::dns_node::DnsNode::start(dns_config(), Some(path))
            .map(drop)
            .map_err(|e| chain(&e))
    });
    crate::netns::delete(&[name]);
    result
        .map(|()| dns_config())
        .map_err(|e| format!("the DNS proxy does not start here ({e})"))
}

/// An error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `--dns-route-table`'s default.
const DNS_ROUTE_TABLE: u32 = 9353;

impl Controller {
    pub fn start(keep_established: bool) -> Result<Controller> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dns = dns_proxy_starts();
        if let Err(why) = &dns {
            eprintln!("warning: the controllers run without their DNS proxy: {why}");
        }
        let server = rt.block_on(FakeApiServer::start());
        let dir = std::env::temp_dir().join(format!("policy-tests-{}-kubectl", std::process::id()));
        let kubectl = Kubectl::new(&dir, &server.kubeconfig_yaml())?;
        Ok(Controller {
            rt,
            server,
            kubectl,
            dir,
            nodes: HashMap::new(),
            served: Objects::new(),
            keep_established,
            options: nftpol::ruleset::Options {
                log: nftpol::ruleset::LogOptions {
                    allowed: true,
                    rate: 100_000,
                    burst: 100_000,
                    ..nftpol::ruleset::LogOptions::DEFAULT
                },
                dns: dns.as_ref().ok().map(|d| d.steering.clone()),
                ..Default::default()
            },
            dns,
        })
    }

    /// Makes the server hold exactly `objects`, through kubectl: only the step's
    /// differences are sent, so watchers see only those.
    fn serve(&mut self, objects: &Objects) -> Result<()> {
        let plan = kubectl::plan(&self.served, objects);
        if plan.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.kubectl.apply(&plan) {
            // Part of the plan may have gone through: the next step starts from what the
            // server really holds, or every later case would fail on the same objects.
            self.served = self.held();
            return Err(e);
        }
        self.served = objects.clone();
        Ok(())
    }

    /// The objects the server holds, keyed as the harness keys them.
    fn held(&self) -> Objects {
        let mut out = Objects::new();
        // Every kind the controller watches: what `nftpol::input` does not read is left
        // out (crate::kinds), as the controller would never see it.
        for kind in [
            "Namespace",
            "Node",
            "Pod",
            "NetworkPolicy",
            "ClusterNetworkPolicy",
        ] {
            for v in self.server.list(kind) {
                if let Ok(Some(o)) = nftpol::input::object_from_value(v.clone(), "fake server") {
                    let key = (
                        o.kind(),
                        o.namespace().map(str::to_string),
                        o.name().to_string(),
                    );
                    out.insert(key, v);
                }
            }
        }
        out
    }

    fn ensure_running(&mut self, node: &str, netns: &str) {
        let path = PathBuf::from(format!("/run/netns/{netns}"));
        let ino = inode(&path);
        if self
            .nodes
            .get(node)
            .is_some_and(|n| !n.task.is_finished() && n.netns_inode == ino)
        {
            return;
        }
        if let Some(mut old) = self.nodes.remove(node) {
            if let Some(stop) = old.stop.take() {
                let _ = stop.send(());
            }
            let task = old.task;
            let _ = self
                .rt
                .block_on(async move { tokio::time::timeout(Duration::from_secs(5), task).await });
        }
        // Bound here and handed over bound: no other process can take the port between.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let metrics_addr = listener.local_addr().expect("the listener's address");
        let metrics_port = metrics_addr.port();
        let config = controller::Config {
            options: self.options.clone(),
            metrics_addr,
            metrics_listener: Some(std::sync::Arc::new(listener)),
            keep_established: self.keep_established,
            coalesce: Duration::from_millis(5),
            resync: Duration::from_secs(30),
            netns: Some(path),
            dns: self.dns.clone().ok(),
            ..controller::Config::new(node)
        };
        let client = {
            let _guard = self.rt.enter();
            self.server.client()
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = self.rt.spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = controller::run(config, client, NetlinkDataplane::open, shutdown).await
            {
                // The whole chain: the top error names only what failed.
                eprintln!("controller: {}", chain(&e));
            }
        });
        self.nodes.insert(
            node.to_string(),
            Node {
                metrics_port,
                stop: Some(tx),
                task,
                netns_inode: ino,
            },
        );
    }
}

impl Backend for Controller {
    fn program(
        &mut self,
        node: &str,
        netns: &str,
        index: &Index,
        _fresh: bool,
        objects: &Objects,
    ) -> Result<String> {
        self.serve(objects)?;
        self.ensure_running(node, netns);
        let graph = nftpol::graph::PolicyGraph::build_for(index, Some(node));
        let want = nftpol::ruleset::build_with(&graph, &self.options);
        let path = PathBuf::from(format!("/run/netns/{netns}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let drift = nftpol::netlink::in_netns(&path, || {
                let live = nftpol::netlink::read_table(&want.name).ok().flatten();
                nftpol::netlink::drift(&want, live.as_ref())
            })
            .map_err(|e| anyhow::anyhow!("{node}: {e}"))?;
            match drift {
                None => break,
                Some(d) if Instant::now() > deadline => {
                    bail!("{node}: the controller did not converge in 20 s: {d}")
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        Ok(format!(
            "# programmed by the controller\n{}",
            nftpol::script::render(&want)
        ))
    }

    fn cuts_revoked(&self) -> Result<(), &'static str> {
        Ok(())
    }

    fn logs_verdicts(&self) -> Result<(), &'static str> {
        Ok(())
    }

    fn learns_names(&self) -> Result<(), String> {
        self.dns.as_ref().map(drop).map_err(Clone::clone)
    }

    fn entries_cut(&self, node: &str) -> Option<u64> {
        entries_cut(self.nodes.get(node)?.metrics_port)
    }

    fn verdict_losses(&self) -> Option<String> {
        let mut nodes: Vec<_> = self.nodes.iter().collect();
        nodes.sort_by_key(|(name, _)| name.as_str());
        let per_node: Vec<String> = nodes
            .into_iter()
            .map(|(name, n)| {
                let get = |m| metric(n.metrics_port, m).map_or("?".into(), |v| v.to_string());
                format!(
                    "{name}: lost {}, unmapped {}",
                    get("nftpol_verdict_records_lost_total"),
                    get("nftpol_verdict_records_unmapped_total")
                )
            })
            .collect();
        Some(per_node.join("; "))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(stop) = node.stop.take() {
                let _ = stop.send(());
            }
        }
        let tasks: Vec<_> = self.nodes.drain().map(|(_, n)| n.task).collect();
        self.rt.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
