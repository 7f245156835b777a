//! What the benchmark binaries share: knobs from the environment, CPU time, medians, and
//! incompressible reproducible bytes for synthetic media.

use std::env;

/// A knob from the environment (`NAME=value`), or `default`.
pub fn knob(name: &str, default: u64) -> u64 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User + system CPU seconds of this process (`who = RUSAGE_SELF`) or of its waited-for
/// children (`RUSAGE_CHILDREN`).
pub fn cpu(who: libc::c_int) -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A tiny xorshift: media payloads that do not compress, reproducible.
pub struct Noise(pub u64);

impl Noise {
    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *byte = self.0 as u8;
        }
    }
}
