//! Accounting inside the measurement window: packets sent (audio, and video per simulcast
//! layer) and received, one-way latency histogram (10 µs buckets up to 200 ms).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::media::{Stamp, SIMULCAST};

/// Video layers counted apart (a publisher without simulcast sends layer 0).
pub const LAYERS: usize = SIMULCAST.len();

const BUCKET_US: u64 = 10;
const BUCKETS: usize = 20_000;

pub struct Stats {
    window: (AtomicU64, AtomicU64),
    /// Audio, video.
    pub received: [AtomicU64; 2],
    pub sent_audio: AtomicU64,
    pub sent_video: [AtomicU64; LAYERS],
    pub streams: [AtomicI64; 2],
    hist: Vec<AtomicU64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            window: (AtomicU64::new(u64::MAX), AtomicU64::new(u64::MAX)),
            received: Default::default(),
            sent_audio: Default::default(),
            sent_video: Default::default(),
            streams: Default::default(),
            hist: (0..=BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Stats {
    pub fn set_window(&self, start_us: u64, end_us: u64) {
        self.window.1.store(end_us, Ordering::Relaxed);
        self.window.0.store(start_us, Ordering::Relaxed);
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window.0.load(Ordering::Relaxed) && t < self.window.1.load(Ordering::Relaxed)
    }

    pub fn sent_audio(&self, sent_us: u64) {
        if self.in_window(sent_us) {
            self.sent_audio.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn sent_video(&self, layer: usize, sent_us: u64) {
        if self.in_window(sent_us) {
            self.sent_video[layer].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn received(&self, video: bool, stamp: Stamp, now_us: u64) {
        if !self.in_window(stamp.sent_us) {
            return;
        }
        self.received[video as usize].fetch_add(1, Ordering::Relaxed);
        let bucket = (now_us.saturating_sub(stamp.sent_us) / BUCKET_US) as usize;
        self.hist[bucket.min(BUCKETS)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_opened(&self, video: bool) {
        self.streams[video as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_closed(&self, video: bool) {
        self.streams[video as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// Latency percentile in ms (bucket upper bound).
    pub fn latency_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .hist
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::INFINITY
    }
}
