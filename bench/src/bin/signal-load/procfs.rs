//! Server-side resource sampling from /proc, taken by the load client itself at the exact
//! phase boundaries it controls (a shell script polling from outside could not know when
//! the relay phase starts and ends).

use anyhow::{ensure, Context, Result};
use std::fs;

/// CPU time of a process, all threads included.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// utime + stime from /proc/PID/stat, in microseconds (tick resolution, usually 10 ms).
    pub stat_us: u64,
    /// Sum of per-thread `sum_exec_runtime` from /proc/PID/task/*/schedstat, in
    /// microseconds: nanosecond resolution, used as a cross-check for short windows.
    /// Misses threads that exit inside the window (the servers keep theirs).
    pub sched_us: u64,
}

impl Cpu {
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            stat_us: self.stat_us.saturating_sub(earlier.stat_us),
            sched_us: self.sched_us.saturating_sub(earlier.sched_us),
        }
    }
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// `pid` is a number, or "self".
pub fn cpu(pid: &str) -> Result<Cpu> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; everything after its closing ')'
    // is space-separated, starting with field 3 (state). utime/stime are fields 14/15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse().ok())
            .context("malformed stat field")
    };
    let stat_us = (ticks(14)? + ticks(15)?) * 1_000_000 / clock_ticks_per_sec();

    let mut sched_ns = 0u64;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
                sched_ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Ok(Cpu {
        stat_us,
        sched_us: sched_ns / 1000,
    })
}

/// Whole-machine CPU time from /proc/stat, in microseconds summed over all CPUs: lets a
/// run report how much of the shared machine other programs used while it measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Machine {
    pub total_us: u64,
    pub busy_us: u64,
}

pub fn machine() -> Result<Machine> {
    let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    ensure!(f.len() == 8, "malformed /proc/stat");
    let total: u64 = f.iter().sum();
    let idle = f[3] + f[4];
    let hz = clock_ticks_per_sec();
    Ok(Machine {
        total_us: total * 1_000_000 / hz,
        busy_us: (total - idle) * 1_000_000 / hz,
    })
}

/// Memory figures from /proc/PID/status, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    /// Current resident set.
    pub rss_kib: u64,
    /// Peak resident set (high-water mark since the process started).
    pub hwm_kib: u64,
}

pub fn mem(pid: &str) -> Result<Mem> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Mem {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let c = cpu("self").unwrap();
        // Burn a little CPU so the counters can only grow.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let d = cpu("self").unwrap().since(c);
        assert!(d.sched_us > 0);
        let m = mem("self").unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
    }
}
