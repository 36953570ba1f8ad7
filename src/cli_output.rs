//! Where the `nftpol` command writes what it prints: stdout, or `--output-file FILE` as
//! Unix tools write a file.
//!
//! - `-` is stdout.
//! - A symlink is followed (to the end of its chain, even if the target does not exist
//!   yet): its target is written, the link stays.
//! - A regular file (or a new one) is replaced whole or not at all: a temporary file in
//!   the same directory, then a rename. An existing file keeps its mode and, where the
//!   process may set them, its owner and group; a new one gets 0666 less the umask, as
//!   the shell's `>` gives.
//! - Anything else that exists (a device like /dev/null, a FIFO, a socket) is opened and
//!   written through, as the shell's `>` does; a directory is an error.
//!
//! A closed stdout (`nftpol explain ... | head -1`) is not an error of the command: it is
//! [`StdoutClosed`], which `main` turns into a quiet exit with status 141, what a shell
//! shows for a process that SIGPIPE ended (Rust ignores SIGPIPE, and restoring it would
//! need `unsafe`).

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The exit status of a command whose stdout was closed: 128 + SIGPIPE.
pub const STDOUT_CLOSED_STATUS: u8 = 141;

/// The reader of stdout went away; nothing more can be said there.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Runs `write` on a locked, buffered stdout and flushes it; a broken pipe becomes
/// [`StdoutClosed`].
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}

/// Writes `data` to `file` as the module doc says; `None` or `-` is stdout.
pub fn emit(file: Option<&Path>, data: &[u8]) -> anyhow::Result<()> {
    match file {
        None => to_stdout(|out| out.write_all(data)),
        Some(p) if p.as_os_str() == "-" => to_stdout(|out| out.write_all(data)),
        Some(p) => write_file(p, data).with_context(|| format!("writing {}", p.display())),
    }
}

/// The path at the end of `path`'s chain of symlinks (itself when it is none); relative
/// links are read from their own directory.
fn follow_links(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    // Linux gives up after 40 links (ELOOP); so does this.
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let target = follow_links(path)?;
    match fs::metadata(&target) {
        Ok(m) if m.is_file() => replace(&target, data, Some(&m)),
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        )),
        Ok(_) => {
            // A device, FIFO or socket: written through, never replaced.
            let mut f = OpenOptions::new().write(true).open(&target)?;
            f.write_all(data)?;
            f.flush()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => replace(&target, data, None),
        Err(e) => Err(e),
    }
}

/// A temporary file beside `path`, written, synced and renamed over it; on any error the
/// temporary file is removed (tempfile's drop) and `path` is untouched.
fn replace(path: &Path, data: &[u8], old: Option<&fs::Metadata>) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the path names no file"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".nftpol-tmp")
        .permissions(Permissions::from_mode(0o666))
        .tempfile_in(dir)?;
    if let Some(m) = old {
        // Owner first: chown clears the set-id bits, the mode then restores them.
        // Only root may give a file away; anyone else keeps their own file's owner.
        let _ = std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid()));
        tmp.as_file()
            .set_permissions(Permissions::from_mode(m.mode() & 0o7777))?;
    }
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
