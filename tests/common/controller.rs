//! Shared by the controller tests (included with `#[path = "common/controller.rs"]`,
//! beside `mod common`, whose builders it uses): object builders, the controller's
//! configuration for tests, and a plain HTTP GET of its probe endpoints.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nftpol::controller;
use serde_json::Value;

pub fn ns(name: &str, labels: Value) -> Value {
    crate::common::ns(name)
        .set(&["metadata"], "labels", labels)
        .value()
}

/// A pod on node `n<node>` (192.168.100.`node`) with the given labels, serving http on
/// 80/TCP.
pub fn pod(ns: &str, name: &str, node: u8, ip: &str, labels: Value) -> Value {
    crate::common::pod(ns, name)
        .set(&["metadata"], "labels", labels)
        .node(&format!("n{node}"))
        .ip(ip)
        .host_ip(&format!("192.168.100.{node}"))
        .port("http", 80, "TCP")
        .value()
}

pub fn policy(ns: &str, name: &str, spec: Value) -> Value {
    crate::common::netpol(ns, name)
        .set(&[], "spec", spec)
        .value()
}

/// A controller for node `node` with 10 ms coalescing, its metrics on `listener` (see
/// [`metrics_listener`]).
/// Without a namespace (a scripted dataplane, no kernel) its verdict logs are off: their
/// reader would bind an NFLOG group in the test process's own namespace.
pub fn config(
    node: &str,
    listener: Arc<TcpListener>,
    resync: Duration,
    netns: Option<PathBuf>,
) -> controller::Config {
    let mut options = nftpol::ruleset::Options::default();
    if netns.is_none() {
        options.log = nftpol::ruleset::LogOptions::OFF;
    }
    controller::Config {
        metrics_addr: listener.local_addr().unwrap(),
        metrics_listener: Some(listener),
        coalesce: Duration::from_millis(10),
        resync,
        netns,
        options,
        ..controller::Config::new(node)
    }
}

/// A listener on a free port of 127.0.0.1 for the controller's endpoint, and its port.
/// Bound here and handed over bound: no other process can take the port in between.
pub fn metrics_listener() -> (Arc<TcpListener>, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (Arc::new(listener), port)
}

pub async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return (0, String::new());
    };
    let _ = s
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, buf)
}
