//! Kernel memory, as the whole machine sees it: `Slab + VmallocUsed + Percpu` from
//! `/proc/meminfo` (pages: what the kernel really holds, including slab pages kept
//! partly empty), and the sum of `active_objs × objsize` over `/proc/slabinfo` (bytes
//! of live slab objects: finer, but blind to vmalloc and per-cpu memory). Both are
//! global, so callers take differences around a load and medians over several loads.

use anyhow::{Context, Result};

/// The kernel-memory lines of `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub slab: u64,
    pub vmalloc: u64,
    pub percpu: u64,
}

/// One reading of both counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub meminfo: Meminfo,
    /// Live slab object bytes.
    pub slab_objects: u64,
}

/// Differences between two samples, in bytes (may be negative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delta {
    pub slab: f64,
    pub vmalloc: f64,
    pub percpu: f64,
    pub slab_objects: f64,
}

impl Delta {
    /// `Slab + VmallocUsed + Percpu`.
    pub fn total(&self) -> f64 {
        self.slab + self.vmalloc + self.percpu
    }
}

impl Sample {
    pub fn now() -> Result<Sample> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let slabinfo =
            std::fs::read_to_string("/proc/slabinfo").context("reading /proc/slabinfo")?;
        Ok(Sample {
            meminfo: parse_meminfo(&meminfo)
                .context("no Slab/VmallocUsed/Percpu in /proc/meminfo")?,
            slab_objects: parse_slabinfo(&slabinfo).context("unreadable /proc/slabinfo")?,
        })
    }

    /// What changed since `earlier`.
    pub fn since(&self, earlier: &Sample) -> Delta {
        let d = |a: u64, b: u64| a as f64 - b as f64;
        Delta {
            slab: d(self.meminfo.slab, earlier.meminfo.slab),
            vmalloc: d(self.meminfo.vmalloc, earlier.meminfo.vmalloc),
            percpu: d(self.meminfo.percpu, earlier.meminfo.percpu),
            slab_objects: d(self.slab_objects, earlier.slab_objects),
        }
    }
}

/// `Slab`, `VmallocUsed` and `Percpu` in bytes; `None` when a field is missing.
pub fn parse_meminfo(text: &str) -> Option<Meminfo> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let mut words = line[name.len()..].split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        Some(match words.next() {
            Some("kB") => value * 1024,
            _ => value,
        })
    };
    Some(Meminfo {
        slab: field("Slab:")?,
        vmalloc: field("VmallocUsed:")?,
        percpu: field("Percpu:")?,
    })
}

/// Sum of `active_objs × objsize` over every cache of `/proc/slabinfo` (version 2.1).
pub fn parse_slabinfo(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    if !lines.next()?.starts_with("slabinfo - version: 2.") {
        return None;
    }
    let mut total = 0u64;
    for line in lines.filter(|l| !l.starts_with('#')) {
        let mut w = line.split_whitespace().skip(1);
        let active: u64 = w.next()?.parse().ok()?;
        let _num: u64 = w.next()?.parse().ok()?;
        let size: u64 = w.next()?.parse().ok()?;
        total += active * size;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let text = "MemTotal:  100 kB\nSlab:   292660 kB\nSReclaimable: 5 kB\nVmallocUsed:   14572 kB\nPercpu:   896 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(
            (m.slab, m.vmalloc, m.percpu),
            (292660 * 1024, 14572 * 1024, 896 * 1024)
        );
        assert_eq!(parse_meminfo("Slab: 1 kB\n"), None);
    }

    #[test]
    fn slabinfo() {
        let text = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-64           100    128     64   64    1 : tunables    0    0    0 : slabdata      2      2      0
nft_foo                3      8    512    8    1 : tunables    0    0    0 : slabdata      1      1      0
";
        assert_eq!(parse_slabinfo(text), Some(100 * 64 + 3 * 512));
        assert_eq!(parse_slabinfo("nonsense"), None);
    }

    #[test]
    fn differences() {
        let m = |slab, vmalloc, percpu| Meminfo {
            slab,
            vmalloc,
            percpu,
        };
        let a = Sample {
            meminfo: m(10, 5, 1),
            slab_objects: 20,
        };
        let b = Sample {
            meminfo: m(4, 9, 1),
            slab_objects: 25,
        };
        let d = b.since(&a);
        assert_eq!(
            (d.slab, d.vmalloc, d.percpu, d.slab_objects),
            (-6.0, 4.0, 0.0, 5.0)
        );
        assert_eq!(d.total(), -2.0);
    }
}
