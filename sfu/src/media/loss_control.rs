//! A ceiling on what a subscriber's link is given, from the loss it reports (sans-IO).
//!
//! str0m's send-side estimate reacts to a link that suddenly carries less (a router's rate
//! limit, a congested Wi-Fi) within a second in most runs, but in some only after several:
//! its delay-based detector sees a full buffer as a new base delay, and its loss-based
//! controller moves in small steps. Meanwhile every video toward that subscriber freezes.
//! What got through is known sooner: transport-wide feedback says, every statistics interval,
//! which fraction of what we sent was lost. Following GoogCC's loss-based controller
//! (draft-ietf-rmcat-gcc-02 §6), heavy loss (over [`HEAVY_LOSS`]) puts a ceiling at what
//! arrived: what we sent (every datagram: media, retransmissions, probes' padding, RTCP),
//! less what was lost. Light loss (under [`LIGHT_LOSS`]) raises it by
//! [`GROWTH_PERCENT`] an interval until str0m's estimate is the lower one again, and then
//! the ceiling goes. In between it holds.
//!
//! Heavy loss also says that even the lowest layers do not get through: [`congested`]
//! lets the allocator pause a video at once instead of after its pause hold.
//!
//! [`congested`]: LossControl::congested

use std::time::Instant;

/// Loss fraction above which the link is taken to be overloaded.
pub const HEAVY_LOSS: f32 = 0.10;
/// Loss fraction under which the link is taken to have room.
pub const LIGHT_LOSS: f32 = 0.02;
/// How much the ceiling rises per interval of light loss, in percent.
pub const GROWTH_PERCENT: u64 = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LossControl {
    /// Bits per second; `None`: no ceiling (the estimate alone counts).
    ceiling: Option<u64>,
    /// The last interval lost heavily.
    congested: bool,
    /// When the last interval ended, and the bytes sent by then.
    last: Option<(Instant, u64)>,
}

impl LossControl {
    /// Folds in one statistics interval, ending `now`: the fraction of what was sent that
    /// the subscriber did not get (`None`: no feedback this interval), the bytes sent to it
    /// so far, and the send-side estimate.
    pub fn interval(
        &mut self,
        now: Instant,
        loss: Option<f32>,
        bytes_sent: u64,
        estimate: Option<u64>,
    ) {
        let sending = self.last.and_then(|(at, bytes)| {
            let seconds = now.saturating_duration_since(at).as_secs_f64();
            (seconds > 0.0).then(|| (bytes_sent.saturating_sub(bytes) * 8) as f64 / seconds)
        });
        self.last = Some((now, bytes_sent));
        let Some(loss) = loss else {
            self.congested = false;
            return;
        };
        self.congested = loss > HEAVY_LOSS;
        if self.congested {
            if let Some(sending) = sending {
                let arrived = (sending * f64::from(1.0 - loss.min(1.0))) as u64;
                self.ceiling = Some(self.ceiling.map_or(arrived, |c| c.min(arrived)));
            }
        } else if loss < LIGHT_LOSS {
            self.ceiling = self
                .ceiling
                .map(|c| c + c * GROWTH_PERCENT / 100)
                .filter(|c| estimate.is_some_and(|e| *c < e));
        }
    }

    /// `estimate`, or the ceiling if lower.
    pub fn cap(&self, estimate: u64) -> u64 {
        self.ceiling.map_or(estimate, |c| c.min(estimate))
    }

    /// The last interval lost heavily: what is sent now does not get through.
    pub fn congested(&self) -> bool {
        self.congested
    }

    pub fn ceiling(&self) -> Option<u64> {
        self.ceiling
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const K: u64 = 1000;

    /// Feeds intervals of one second, each sending `bps`.
    struct Feed {
        control: LossControl,
        now: Instant,
        bytes: u64,
    }

    impl Feed {
        fn new() -> Self {
            let mut feed = Feed {
                control: LossControl::default(),
                now: Instant::now(),
                bytes: 0,
            };
            // The first interval only starts the byte count.
            feed.control.interval(feed.now, Some(0.0), 0, None);
            feed
        }

        fn second(&mut self, loss: Option<f32>, bps: u64, estimate: Option<u64>) -> &LossControl {
            self.now += Duration::from_secs(1);
            self.bytes += bps / 8;
            self.control.interval(self.now, loss, self.bytes, estimate);
            &self.control
        }
    }

    #[test]
    fn no_loss_no_ceiling() {
        let mut feed = Feed::new();
        for _ in 0..5 {
            feed.second(Some(0.0), 1_000 * K, Some(2_000 * K));
        }
        assert_eq!(feed.control.ceiling(), None);
        assert_eq!(feed.control.cap(2_000 * K), 2_000 * K);
        assert!(!feed.control.congested());
    }

    #[test]
    fn heavy_loss_caps_at_what_arrived_and_only_lowers_it() {
        let mut feed = Feed::new();
        // 1.2 Mbit/s sent into a 300 kbit/s link: three quarters lost.
        let control = feed.second(Some(0.75), 1_200 * K, Some(1_500 * K));
        assert_eq!(control.ceiling(), Some(300 * K));
        assert_eq!(control.cap(1_500 * K), 300 * K);
        assert_eq!(control.cap(200 * K), 200 * K, "a lower estimate wins");
        assert!(control.congested());
        // Still too much: lower again, never up on heavy loss.
        let control = feed.second(Some(0.2), 300 * K, Some(1_400 * K));
        assert_eq!(control.ceiling(), Some(240 * K));
        let control = feed.second(Some(0.5), 1_000 * K, Some(1_400 * K));
        assert_eq!(control.ceiling(), Some(240 * K));
    }

    #[test]
    fn moderate_loss_holds_light_loss_grows_until_the_estimate_takes_over() {
        let mut feed = Feed::new();
        feed.second(Some(0.5), 600 * K, Some(1_000 * K));
        assert_eq!(feed.control.ceiling(), Some(300 * K));
        let control = feed.second(Some(0.05), 300 * K, Some(1_000 * K));
        assert_eq!(control.ceiling(), Some(300 * K), "held");
        assert!(!control.congested());
        let control = feed.second(Some(0.0), 300 * K, Some(1_000 * K));
        assert_eq!(control.ceiling(), Some(324 * K));
        let mut intervals = 1;
        while feed.control.ceiling().is_some() {
            feed.second(Some(0.01), 300 * K, Some(1_000 * K));
            intervals += 1;
            assert!(intervals < 30);
        }
        // 300 kbit/s × 1.08^n ≥ 1 Mbit/s after 16 intervals.
        assert_eq!(intervals, 16);
        assert_eq!(feed.control.cap(1_000 * K), 1_000 * K);
    }

    #[test]
    fn no_feedback_keeps_the_ceiling_and_is_not_congestion() {
        let mut feed = Feed::new();
        feed.second(Some(0.9), 1_000 * K, Some(1_000 * K));
        let control = feed.second(None, 100 * K, Some(1_000 * K));
        assert_eq!(control.ceiling(), Some(100 * K));
        assert!(!control.congested());
    }

    #[test]
    fn total_loss_caps_at_nothing_and_the_first_interval_only_counts() {
        let mut control = LossControl::default();
        let t0 = Instant::now();
        control.interval(t0, Some(0.9), 10_000, None);
        assert_eq!(control.ceiling(), None, "no rate known yet");
        assert!(control.congested());
        control.interval(t0 + Duration::from_secs(1), Some(1.5), 20_000, None);
        assert_eq!(control.ceiling(), Some(0));
        assert_eq!(control.cap(500 * K), 0);
    }
}
