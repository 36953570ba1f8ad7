//! `fake-apiserver`: serves objects loaded from files until killed.
//!
//! ```text
//! fake-apiserver [--listen 127.0.0.1:6443] [--kubeconfig OUT] FILE...
//! ```
//! Files are YAML (multi-document, `kind: List`) or JSON (one object per line, as
//! `nftpol synth` prints them). The kubeconfig written to OUT points at the server.

use fake_apiserver::{load, FakeApiServer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-apiserver [--listen ADDR] [--kubeconfig OUT] FILE...";

struct Args {
    listen: SocketAddr,
    kubeconfig: Option<PathBuf>,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
        kubeconfig: None,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                args.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value("--kubeconfig")?)),
            "-h" | "--help" => return Err(USAGE.to_string()),
            f if f.starts_with('-') && f != "-" => {
                return Err(format!("unknown flag {f}\n{USAGE}"))
            }
            _ => args.files.push(PathBuf::from(a)),
        }
    }
    Ok(args)
}

async fn run(args: Args) -> Result<(), String> {
    let mut objects = Vec::new();
    for f in &args.files {
        objects.extend(load::objects_from_file(f)?);
    }
    let server = FakeApiServer::start_on(args.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let total = objects.len();
    let mut skipped = 0;
    for obj in objects {
        if let Err(e) = server.try_apply(obj) {
            eprintln!("fake-apiserver: skipping an object: {e}");
            skipped += 1;
        }
    }
    if let Some(out) = &args.kubeconfig {
        std::fs::write(out, server.kubeconfig_yaml())
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    eprintln!(
        "fake-apiserver: serving {} objects ({skipped} skipped) at {}, resourceVersion {}",
        total - skipped,
        server.url(),
        server.resource_version()
    );
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    server.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match parse_args() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-apiserver: {e}");
            ExitCode::from(2)
        }
    }
}
