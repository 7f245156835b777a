//! Who is speaking, from the RFC 6464 audio level each publisher's packets carry (no
//! decoding), sans-IO: levels go in per packet, a smoothed level comes out per window.
//!
//! The algorithm and constants are LiveKit's (`pkg/sfu/audio/audiolevel.go`): over a window of
//! [`WINDOW`], count the packets at or above [`ACTIVE_DBOV`] and keep the loudest. A window
//! whose active share is at least [`MIN_ACTIVE_SHARE`] scores the loudest level lowered by how
//! little of the window was active (`loudest + 20·log10(share)` dBov), as a linear amplitude;
//! any other window scores 0 (a cough is not speech). Scores are smoothed over
//! [`SMOOTH_WINDOWS`] windows (an exponential moving average), so a speaker stays ranked
//! through the gaps between words.

use std::time::Duration;

/// One scoring window (LiveKit's `update_interval`).
pub const WINDOW: Duration = Duration::from_millis(400);
/// Packets at or above this level (dBov; 0 is the loudest) count as active (LiveKit's
/// `active_level` 35).
pub const ACTIVE_DBOV: i8 = -35;
/// Share of a window's packets that must be active for it to score.
pub const MIN_ACTIVE_SHARE: f32 = 0.4;
/// Windows the moving average spans.
pub const SMOOTH_WINDOWS: f32 = 2.0;
/// A smoothed level below this (linear amplitude; ≈ −50 dBov) is silence.
pub const SPEAKING_LEVEL: f32 = 0.003;

/// The speech level of one audio publication.
#[derive(Debug, Clone, Default)]
pub struct SpeakerMeter {
    packets: u32,
    active: u32,
    /// Loudest level of the window, dBov (≤ 0).
    loudest: Option<i8>,
    smoothed: f32,
}

impl SpeakerMeter {
    /// One packet's RFC 6464 level as str0m gives it: −127 (silence) … 0 dBov; `None` when the
    /// packet carries no level (it counts as silence).
    pub fn packet(&mut self, level: Option<i8>) {
        self.packets += 1;
        if let Some(level) = level {
            if level >= ACTIVE_DBOV {
                self.active += 1;
            }
            self.loudest = Some(self.loudest.map_or(level, |l| l.max(level)));
        }
    }

    /// Closes the window: scores it, folds it into the average, and returns the average.
    pub fn close_window(&mut self) -> f32 {
        let score = match self.loudest {
            Some(loudest) if self.packets > 0 => {
                let share = self.active as f32 / self.packets as f32;
                if share >= MIN_ACTIVE_SHARE {
                    let dbov = f32::from(loudest) + 20.0 * share.log10();
                    10f32.powf(dbov / 20.0)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        let factor = 2.0 / (SMOOTH_WINDOWS + 1.0);
        self.smoothed += factor * (score - self.smoothed);
        if self.smoothed < 1e-6 {
            self.smoothed = 0.0;
        }
        self.packets = 0;
        self.active = 0;
        self.loudest = None;
        self.smoothed
    }

    /// The smoothed level as of the last window.
    pub fn level(&self) -> f32 {
        self.smoothed
    }
}

/// The speakers of a room, loudest first: those whose level is at least [`SPEAKING_LEVEL`].
pub fn rank<K: Copy>(levels: impl IntoIterator<Item = (K, f32)>) -> Vec<(K, f32)> {
    let mut speaking: Vec<(K, f32)> = levels
        .into_iter()
        .filter(|(_, level)| *level >= SPEAKING_LEVEL)
        .collect();
    speaking.sort_by(|a, b| b.1.total_cmp(&a.1));
    speaking
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A window of 20 packets (400 ms of 20 ms Opus frames), `active` of them at `dbov`, the
    /// rest silent.
    fn window(meter: &mut SpeakerMeter, active: u32, dbov: i8) -> f32 {
        for i in 0..20 {
            meter.packet(Some(if i < active { dbov } else { -127 }));
        }
        meter.close_window()
    }

    #[test]
    fn steady_speech_scores_its_level_and_silence_scores_nothing() {
        let mut speech = SpeakerMeter::default();
        let mut level = 0.0;
        for _ in 0..10 {
            level = window(&mut speech, 20, -20);
        }
        // −20 dBov, all of the window active: amplitude 0.1.
        assert!((level - 0.1).abs() < 0.001, "{level}");
        let mut quiet = SpeakerMeter::default();
        assert_eq!(window(&mut quiet, 0, -20), 0.0);
        // Below the activity threshold: background noise, not speech.
        assert_eq!(window(&mut quiet, 20, -40), 0.0);
    }

    #[test]
    fn a_short_sound_does_not_count_but_half_a_window_of_speech_does() {
        let mut meter = SpeakerMeter::default();
        assert_eq!(window(&mut meter, 7, -10), 0.0, "35 % of a window: a cough");
        let level = window(&mut meter, 10, -10);
        // −10 dBov lowered by half a window (−6 dB), then averaged with the silent window.
        let expected = 10f32.powf((-10.0 + 20.0 * 0.5f32.log10()) / 20.0) * 2.0 / 3.0;
        assert!((level - expected).abs() < 0.001, "{level} vs {expected}");
    }

    #[test]
    fn the_level_decays_through_pauses_instead_of_dropping() {
        let mut meter = SpeakerMeter::default();
        for _ in 0..5 {
            window(&mut meter, 20, -20);
        }
        let after_one_pause = window(&mut meter, 0, -127);
        assert!(
            after_one_pause > SPEAKING_LEVEL,
            "still speaking after 400 ms of pause"
        );
        for _ in 0..20 {
            window(&mut meter, 0, -127);
        }
        assert_eq!(meter.level(), 0.0, "silent after a long pause");
    }

    #[test]
    fn packets_without_a_level_are_silence() {
        let mut meter = SpeakerMeter::default();
        for _ in 0..20 {
            meter.packet(None);
        }
        assert_eq!(meter.close_window(), 0.0);
    }

    #[test]
    fn speakers_are_ranked_loudest_first_and_the_silent_left_out() {
        let ranked = rank([("ann", 0.01), ("bob", 0.0), ("cid", 0.2), ("dan", 0.001)]);
        assert_eq!(ranked, vec![("cid", 0.2), ("ann", 0.01)]);
    }
}
