//! A real `kubectl` pointed at one server: its kubeconfig and a discovery cache of its
//! own, both in a directory the caller chooses. The one runner of the workspace's
//! kubectl tests (tests/kubectl.rs, this crate's tests/kubectl.rs) and of the conformance
//! harness's controller backend (policy-tests/src/kubectl.rs).
//!
//! ```no_run
//! # async fn demo() {
//! use fake_apiserver::{kubectl::Kubectl, FakeApiServer};
//! let server = FakeApiServer::start().await;
//! let dir = std::env::temp_dir().join("demo");
//! let k = Kubectl::new(&dir, &server).unwrap();
//! // From a thread the server's runtime does not need (kubectl blocks).
//! let yaml = k.run(&["get", "ns", "-o", "yaml"], None).unwrap();
//! # let _ = yaml;
//! # }
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::FakeApiServer;

/// kubectl could not be run, or it failed.
#[derive(Debug, thiserror::Error)]
pub enum KubectlError {
    #[error("cannot run kubectl {args} (is kubectl on PATH?)")]
    Spawn {
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// `kubectl --kubeconfig <dir>/kubeconfig --cache-dir <dir>/cache ...`.
#[derive(Debug, Clone)]
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    /// kubectl for `server`, its files in `dir` (created if missing).
    pub fn new(dir: &Path, server: &FakeApiServer) -> Result<Kubectl, KubectlError> {
        Kubectl::with_kubeconfig(dir, &server.kubeconfig_yaml())
    }

    /// kubectl for the cluster `kubeconfig` (the YAML text) names, its files in `dir`.
    pub fn with_kubeconfig(dir: &Path, kubeconfig: &str) -> Result<Kubectl, KubectlError> {
        let write_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KubectlError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig).map_err(write_error(&path))?;
        Ok(Kubectl {
            kubeconfig: path,
            cache: dir.join("cache"),
        })
    }

    /// Whether `kubectl version --client` runs.
    pub fn on_path() -> bool {
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The command `kubectl <the kubeconfig and cache> ARGS`, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c
    }

    /// Runs `kubectl ARGS`, feeding `stdin`; whatever it exits with.
    pub fn output(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, KubectlError> {
        let spawn_error = |source| KubectlError::Spawn {
            args: args.join(" "),
            source,
        };
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(data).map_err(spawn_error)?;
        }
        child.wait_with_output().map_err(spawn_error)
    }

    /// Runs `kubectl ARGS`, feeding `stdin`, and returns its stdout; a non-zero exit is
    /// an error carrying kubectl's stderr.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, KubectlError> {
        let out = self.output(args, stdin)?;
        if !out.status.success() {
            return Err(KubectlError::Failed {
                args: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
