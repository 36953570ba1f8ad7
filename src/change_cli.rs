//! `nftpol diff` and `nftpol replay`: reading both states or the records, printing, and the
//! exit status (0 no change, 1 changes as `--fail-on` says, 2 error). The work is
//! `nftpol::change`'s.

use std::io::Read;

use nftpol::graph::PolicyGraph;
use nftpol::index::Index;

use crate::cli_args::{DiffArgs, DiffFormat, FailOn, OutputFormat, ReplayArgs};
use crate::cli_commands::{check_budget, load, BadInput, Exit};
use crate::cli_output;

/// Exit 1 when `fail_on` says these changes fail.
fn status(fail_on: FailOn, any: bool, closed: usize, opened: usize) -> anyhow::Result<()> {
    let fails = match fail_on {
        FailOn::Any => any,
        FailOn::Closed => closed > 0,
        FailOn::Opened => opened > 0,
    };
    if fails {
        return Err(Exit(1).into());
    }
    Ok(())
}

pub(crate) fn diff(args: DiffArgs) -> anyhow::Result<()> {
    let side = |files: &[String]| -> anyhow::Result<(Index, PolicyGraph)> {
        let inputs = expand_dirs(args.cluster.iter().chain(files))?;
        let index = load(&inputs, &args.read)?;
        let graph = PolicyGraph::build(&index);
        check_budget(&graph, &args.budget.options())?;
        Ok((index, graph))
    };
    let (b, a) = (side(&args.before)?, side(&args.after)?);
    let d = nftpol::change::diff_graphs([&b.0, &a.0], [&b.1, &a.1]);
    let (fail_on, output_file) = (args.fail_on, args.output_file);
    let text = match args.output {
        DiffFormat::Text => d.to_string(),
        DiffFormat::Json => serde_json::to_string_pretty(&d)? + "\n",
        DiffFormat::Dot => d.to_dot(),
    };
    cli_output::emit(output_file.as_deref(), text.as_bytes())?;
    status(fail_on, !d.is_empty(), d.closed(), d.opened())
}

pub(crate) fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let ReplayArgs {
        records,
        fail_on,
        output,
        output_file,
        read,
        inputs,
    } = args;
    let records = records.as_str();
    let index = load(&expand_dirs(&inputs)?, &read)?;
    let bytes = if records == "-" {
        let mut s = Vec::new();
        std::io::stdin().read_to_end(&mut s).map(|_| s)
    } else {
        std::fs::read(records)
    }
    .map_err(|error| {
        BadInput(nftpol::Error::Read {
            source_name: records.into(),
            error,
        })
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let parsed = text.lines().filter_map(nftpol::change::replay::parse_line);
    let r = nftpol::change::replay::replay(&index, parsed);
    let out = match output {
        OutputFormat::Text => r.to_string(),
        OutputFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
    };
    cli_output::emit(output_file.as_deref(), out.as_bytes())?;
    status(fail_on, !r.changes.is_empty(), r.closed(), r.opened())
}

/// Files as given, and for a directory its `*.yaml`, `*.yml` and `*.json`, sorted.
fn expand_dirs<'a>(paths: impl IntoIterator<Item = &'a String>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for path in paths {
        if path == "-" || !std::path::Path::new(path).is_dir() {
            out.push(path.clone());
            continue;
        }
        let read_error = |error| {
            BadInput(nftpol::Error::Read {
                source_name: path.clone(),
                error,
            })
        };
        let mut files: Vec<String> = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_error)? {
            let p = entry.map_err(read_error)?.path();
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if p.is_file() && matches!(ext, "yaml" | "yml" | "json") {
                files.push(p.to_string_lossy().into_owned());
            }
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}
