//! Network namespaces: entering one on the current thread (sockets created there belong
//! to it for their whole life), running `ip`, `bridge`, `sysctl`-like writes, `nft` and
//! other tools inside one, and removing every namespace of a run.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

/// Held while namespaces are created or removed, so that the signal handler never
/// cleans up half-way through a creation and leaves a namespace behind.
pub static LOCK: Mutex<()> = Mutex::new(());

/// Takes [`LOCK`], whatever a panicking holder left.
pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// While alive, the current thread is in another network namespace.
pub struct Entered {
    original: File,
}

/// Moves the current thread into the named namespace (`/run/netns/NAME`) until the
/// returned guard is dropped.
pub fn enter(name: &str) -> Result<Entered> {
    let original = File::open("/proc/thread-self/ns/net")
        .context("opening this thread's network namespace")?;
    let target = File::open(format!("/run/netns/{name}"))
        .with_context(|| format!("opening network namespace {name}"))?;
    setns(&target, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(Entered { original })
}

impl Drop for Entered {
    fn drop(&mut self) {
        // Failing to return would leave this thread creating sockets in the wrong
        // namespace: nothing sensible can continue after that.
        if let Err(e) = setns(&self.original, CloneFlags::CLONE_NEWNET) {
            eprintln!("fatal: cannot return to the original network namespace: {e}");
            std::process::abort();
        }
    }
}

/// Writes sysctls (`net.ipv4.ip_forward` style keys) inside namespace `ns`, and reads
/// each back to make sure the kernel took it.
pub fn sysctl(ns: &str, pairs: &[(String, &str)]) -> Result<()> {
    let _in = enter(ns)?;
    for (key, value) in pairs {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).with_context(|| format!("setting {key}={value} in {ns}"))?;
        let got =
            std::fs::read_to_string(&path).with_context(|| format!("reading {key} in {ns}"))?;
        if got.trim() != *value {
            bail!(
                "{key} in {ns} is {} after setting it to {value}",
                got.trim()
            );
        }
    }
    Ok(())
}

fn run(cmd: &mut Command, input: Option<&str>, what: &str) -> Result<String> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("{what}: writing stdin"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("{what}: waiting"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -batch -` with `lines`, inside namespace `ns` (or the harness's own).
pub fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let what = format!("ip in {}", ns.unwrap_or("the host namespace"));
    run(&mut cmd, Some(&(lines.join("\n") + "\n")), &what).map(|_| ())
}

/// Runs `bridge -batch -` (iproute2's FDB tool) with `lines` inside namespace `ns`.
pub fn bridge_batch(ns: &str, lines: &[String]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new("bridge");
    cmd.args(["-n", ns, "-batch", "-"]);
    run(
        &mut cmd,
        Some(&(lines.join("\n") + "\n")),
        &format!("bridge in {ns}"),
    )
    .map(|_| ())
}

/// Runs `program` with `input` on stdin inside namespace `ns` (`ip netns exec`).
pub fn exec(ns: &str, program: &str, input: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, program]);
    run(&mut cmd, Some(input), &format!("{program} in {ns}")).map(|_| ())
}

/// Loads an `nft -f` script inside namespace `ns`.
pub fn nft(ns: &str, script: &str) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "nft", "-f", "-"]);
    run(&mut cmd, Some(script), &format!("nft -f in {ns}")).map(|_| ())
}

/// Names of the existing namespaces.
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// Removes the given namespaces (every one, even when some fail). Interfaces in them go
/// with them, and so do the other ends of their veth pairs.
pub fn delete(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let lines: Vec<String> = names.iter().map(|n| format!("netns del {n}")).collect();
    let mut cmd = Command::new("ip");
    cmd.args(["-force", "-batch", "-"]);
    if let Err(e) = run(
        &mut cmd,
        Some(&(lines.join("\n") + "\n")),
        "removing namespaces",
    ) {
        eprintln!("warning: {e:#}");
    }
}

/// Removes every namespace whose name starts with `prefix`.
pub fn delete_prefixed(prefix: &str) {
    let names: Vec<String> = list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    delete(&names);
}

/// The prefix of every namespace this process creates.
pub fn run_prefix() -> String {
    format!("npt{}-", std::process::id())
}

/// Removes namespaces left by earlier runs that were killed (`npt<pid>-...` whose process
/// is gone). Returns how many.
pub fn delete_stale() -> usize {
    let stale: Vec<String> = list()
        .into_iter()
        .filter(|n| {
            let Some(rest) = n.strip_prefix("npt") else {
                return false;
            };
            let Some((pid, _)) = rest.split_once('-') else {
                return false;
            };
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        })
        .collect();
    delete(&stale);
    stale.len()
}
