//! A participant's connection quality (good / fair / poor), from what RTCP and transport-wide
//! feedback say about both directions, sans-IO.
//!
//! Every statistics interval (1 s) str0m reports, per participant: loss both ways from
//! transport-wide congestion control (its sequence numbers on the way in, its feedback on
//! what we sent), the interarrival jitter of its audio on the way in, and the round-trip
//! time: figures of this participant's own link, not of the publishers it receives (whose
//! loss and jitter its receiver reports on forwarded streams would include). [`classify`] grades one interval
//! by the worst of them, with thresholds of common practice for interactive audio/video
//! (ITU-T G.114 puts 150 ms one way, 300 ms round trip, as the limit for good interaction;
//! Opus and VP8 conceal ~2 % loss well, 10 % badly). [`QualityMeter`] then reports a worse
//! grade at once and a better one only after it held for [`UPGRADE_AFTER`] intervals, so an
//! indicator does not flicker.

pub use crate::api::Quality;

/// One interval's figures; `None` = not known this interval (no report arrived).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Fraction of packets lost, 0–1, the worse direction.
    pub loss: Option<f32>,
    pub rtt_ms: Option<f64>,
    /// Interarrival jitter, the worse direction.
    pub jitter_ms: Option<f64>,
}

/// `(fair from, poor from)` per figure.
pub const LOSS: (f32, f32) = (0.02, 0.10);
pub const RTT_MS: (f64, f64) = (300.0, 600.0);
pub const JITTER_MS: (f64, f64) = (30.0, 100.0);
/// Consecutive better intervals before a better grade is reported.
pub const UPGRADE_AFTER: u8 = 3;

/// The grade of one interval: the worst of its figures; nothing known = good.
pub fn classify(sample: &Sample) -> Quality {
    fn grade<T: PartialOrd>(value: Option<T>, (fair, poor): (T, T)) -> Quality {
        match value {
            Some(v) if v >= poor => Quality::Poor,
            Some(v) if v >= fair => Quality::Fair,
            _ => Quality::Good,
        }
    }
    grade(sample.loss, LOSS)
        .min(grade(sample.rtt_ms, RTT_MS))
        .min(grade(sample.jitter_ms, JITTER_MS))
}

/// The reported grade of one participant, with hysteresis.
#[derive(Debug, Clone, Default)]
pub struct QualityMeter {
    reported: Option<Quality>,
    /// Intervals in a row better than the reported grade.
    better: u8,
}

impl QualityMeter {
    /// Folds in one interval; returns the new grade if the reported one changes.
    pub fn interval(&mut self, sample: &Sample) -> Option<Quality> {
        let graded = classify(sample);
        match self.reported {
            None => {
                self.reported = Some(graded);
                Some(graded)
            }
            Some(reported) if graded < reported => {
                self.better = 0;
                self.reported = Some(graded);
                Some(graded)
            }
            Some(reported) if graded > reported => {
                self.better += 1;
                if self.better >= UPGRADE_AFTER {
                    self.better = 0;
                    // One step at a time: poor → fair → good.
                    let next = if reported == Quality::Poor {
                        Quality::Fair
                    } else {
                        Quality::Good
                    };
                    self.reported = Some(next);
                    Some(next)
                } else {
                    None
                }
            }
            Some(_) => {
                self.better = 0;
                None
            }
        }
    }

    pub fn reported(&self) -> Option<Quality> {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(loss: f32, rtt_ms: f64, jitter_ms: f64) -> Sample {
        Sample {
            loss: Some(loss),
            rtt_ms: Some(rtt_ms),
            jitter_ms: Some(jitter_ms),
        }
    }

    #[test]
    fn the_worst_figure_decides() {
        assert_eq!(classify(&sample(0.0, 40.0, 5.0)), Quality::Good);
        assert_eq!(classify(&sample(0.03, 40.0, 5.0)), Quality::Fair);
        assert_eq!(classify(&sample(0.0, 350.0, 5.0)), Quality::Fair);
        assert_eq!(classify(&sample(0.0, 40.0, 120.0)), Quality::Poor);
        assert_eq!(classify(&sample(0.12, 40.0, 5.0)), Quality::Poor);
        assert_eq!(classify(&sample(0.03, 700.0, 5.0)), Quality::Poor);
        assert_eq!(classify(&Sample::default()), Quality::Good, "nothing known");
    }

    #[test]
    fn worse_at_once_better_only_after_it_held() {
        let mut meter = QualityMeter::default();
        let good = sample(0.0, 40.0, 5.0);
        let poor = sample(0.2, 40.0, 5.0);
        assert_eq!(meter.interval(&good), Some(Quality::Good), "first report");
        assert_eq!(meter.interval(&good), None);
        assert_eq!(meter.interval(&poor), Some(Quality::Poor), "at once");
        assert_eq!(meter.interval(&good), None);
        assert_eq!(meter.interval(&good), None);
        assert_eq!(
            meter.interval(&good),
            Some(Quality::Fair),
            "one step after 3 intervals"
        );
        // A relapse restarts the count.
        assert_eq!(meter.interval(&good), None);
        assert_eq!(
            meter.interval(&sample(0.03, 40.0, 5.0)),
            None,
            "fair again: no change"
        );
        assert_eq!(meter.interval(&good), None);
        assert_eq!(meter.interval(&good), None);
        assert_eq!(meter.interval(&good), Some(Quality::Good));
        assert_eq!(meter.reported(), Some(Quality::Good));
    }
}
