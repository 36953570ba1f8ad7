//! Helpers of the `nftpol` binary's tests (tests/cli*.rs, included with `#[path]`): run
//! it in a scratch directory, read its output and status; the shared test cluster.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::*;
use serde_json::json;

pub const BIN: &str = env!("CARGO_BIN_EXE_nftpol");
pub const NFT: &str = "/usr/sbin/nft";

/// Runs nftpol in `dir` with `args`, feeding `stdin`, with the default log filter.
pub fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run nftpol");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

pub struct Dir(pub tempfile::TempDir);

impl Dir {
    pub fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_in(self.path(), args, None)
    }

    /// The names of the files in the directory, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

pub fn policies() -> Vec<Obj> {
    vec![
        netpol("x", "allow-b")
            .selecting("pod", "a")
            .ingress(json!([{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}])),
        netpol("y", "c-out")
            .selecting("pod", "c")
            .policy_types(&["Egress"])
            .egress(json!([{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.1.12/32"]}}], "ports": [{"port": 443}, {"protocol": "UDP", "port": 53}]}])),
    ]
}

/// The shared test cluster plus two policies, as YAML documents.
pub fn cluster_text() -> String {
    let mut objs = cluster();
    objs.extend(policies());
    yaml_docs(&objs)
}

pub const BAD_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
  namespace: x
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/8
        except: [11.0.0.0/16]
";
