//! When a publisher's packet was captured, on our clock: the wall-clock time that the
//! subscribers' sender reports pair with its RTP time.
//!
//! A receiver plays a participant's audio and video in sync (lip sync) by the sender
//! reports of each stream: this RTP time was that wall-clock time. str0m builds ours from
//! the wall-clock time written with each packet. The arrival time is the wrong one: video
//! reaches us later after its capture than audio does (encoding takes longer, and a frame
//! is paced out over many packets), so a receiver that reads arrival times believes the
//! video was captured later than it was by the difference, and plays it that much out of
//! step with the audio (`sfu/tests/core/sync.rs`; docs/BENCHMARKS.md, "Sender reports from
//! capture times").
//!
//! The publisher's own sender reports say when each RTP time was captured, on its clock.
//! One offset per publisher, shared by all its streams, puts that on ours: the least
//! (arrival − capture) seen on any of them. A capture time then never comes after its
//! arrival (str0m reports no sensible RTP time for a wall-clock time in the future), and
//! the streams keep their true difference, which is all lip sync uses.

use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::media::ingest::SenderClock;

/// How far before its arrival a packet may be said to have been captured. More means a
/// wrong report, or a publisher clock that stepped back: the packet is placed this far
/// back. After such a step every packet of that publisher is, for as long as it stays:
/// its streams keep the spacing of their arrivals, as without reports.
pub const MAX_CAPTURE_LAG: Duration = Duration::from_secs(2);

/// One publisher's capture times on our clock.
#[derive(Debug, Default)]
pub struct CaptureClock {
    /// The first arrival seen: arrivals are counted from it.
    anchor: Option<Instant>,
    /// The least (arrival − capture) seen, in nanoseconds (arrival from `anchor`, capture
    /// from the Unix epoch on the publisher's clock).
    least_delay: Option<i128>,
}

impl CaptureClock {
    /// When the packet with `rtp_time` (at `clock_rate` Hz) that arrived at `arrived` was
    /// captured; its arrival time while its stream has no sender report yet.
    pub fn captured(
        &mut self,
        arrived: Instant,
        rtp_time: u32,
        clock_rate: u32,
        report: Option<SenderClock>,
    ) -> Instant {
        let Some(report) = report.filter(|_| clock_rate > 0) else {
            return arrived;
        };
        let Ok(reported) = report.ntp.duration_since(UNIX_EPOCH) else {
            return arrived;
        };
        // RTP time runs on from the report, or back to it for a packet sent before it.
        let ticks = i128::from(rtp_time.wrapping_sub(report.rtp_time) as i32);
        let capture = reported.as_nanos() as i128 + ticks * 1_000_000_000 / i128::from(clock_rate);
        let anchor = *self.anchor.get_or_insert(arrived);
        let delay = signed_nanos(arrived, anchor) - capture;
        let least = self.least_delay.map_or(delay, |least| least.min(delay));
        self.least_delay = Some(least);
        let lag = (delay - least).min(MAX_CAPTURE_LAG.as_nanos() as i128);
        arrived
            .checked_sub(Duration::from_nanos(lag as u64))
            .unwrap_or(arrived)
    }
}

/// `a − b` in nanoseconds, negative if `a` is earlier.
fn signed_nanos(a: Instant, b: Instant) -> i128 {
    match a.checked_duration_since(b) {
        Some(after) => after.as_nanos() as i128,
        None => -(b.duration_since(a).as_nanos() as i128),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIDEO: u32 = 90_000;
    const AUDIO: u32 = 48_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The publisher's clock: capture at `ms` after its epoch was RTP time `rtp`.
    fn report(at_ms: u64, rtp_time: u32) -> SenderClock {
        SenderClock {
            ntp: UNIX_EPOCH + Duration::from_secs(1_800_000_000) + ms(at_ms),
            rtp_time,
        }
    }

    #[test]
    fn without_a_report_the_arrival_stands() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        assert_eq!(clock.captured(t0, 1234, VIDEO, None), t0);
        assert_eq!(
            clock.captured(t0, 1234, 0, Some(report(0, 0))),
            t0,
            "no clock rate"
        );
    }

    /// Audio arrives 5 ms after capture, video frames 40 ms after (encoding and pacing):
    /// both are placed at their capture time plus the least delay (audio's 5 ms), so a
    /// video frame no longer carries its extra 35 ms.
    #[test]
    fn audio_and_video_keep_their_capture_times_not_their_arrival_times() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        let audio = report(0, 10_000);
        let video = report(0, 500_000);
        for frame in 0..10u32 {
            let captured = u64::from(frame) * 20;
            let audio_rtp = 10_000 + frame * 960; // 20 ms at 48 kHz
            let got = clock.captured(t0 + ms(captured + 5), audio_rtp, AUDIO, Some(audio));
            assert_eq!(got, t0 + ms(captured + 5), "audio frame {frame}");
            let video_rtp = 500_000 + frame * 1_800; // 20 ms at 90 kHz
            let got = clock.captured(t0 + ms(captured + 40), video_rtp, VIDEO, Some(video));
            assert_eq!(got, t0 + ms(captured + 5), "video frame {frame}");
        }
    }

    /// The packets of one frame share its RTP time: the last one, paced out 30 ms after
    /// the first, is still placed at the frame's capture.
    #[test]
    fn a_paced_frame_keeps_one_capture_time() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        let video = report(100, 9_000);
        let first = clock.captured(t0 + ms(10), 9_000, VIDEO, Some(video));
        let last = clock.captured(t0 + ms(40), 9_000, VIDEO, Some(video));
        assert_eq!(first, last);
        assert_eq!(first, t0 + ms(10));
    }

    #[test]
    fn never_after_the_arrival_and_never_further_back_than_the_bound() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now() + Duration::from_secs(60);
        let video = report(0, 0);
        // The least delay so far: 0 ms.
        assert_eq!(clock.captured(t0, 0, VIDEO, Some(video)), t0);
        // Captured 1 ms later but arrives 11 ms later: 10 ms in the queue.
        assert_eq!(
            clock.captured(t0 + ms(11), 90, VIDEO, Some(video)),
            t0 + ms(1)
        );
        // Arrives with less delay than ever: becomes the new least, placed at its arrival.
        assert_eq!(
            clock.captured(t0 + ms(12), 90 * 20, VIDEO, Some(video)),
            t0 + ms(12)
        );
        // A report 10 s in the publisher's past (a stepped clock, a wrong report).
        let stale = report(0, 90 * 10_000);
        let at = t0 + ms(13);
        assert_eq!(
            clock.captured(at, 0, VIDEO, Some(stale)),
            at - MAX_CAPTURE_LAG
        );
    }

    /// RTP time wraps at 2^32; a packet sent just before its report counts back from it.
    #[test]
    fn rtp_time_wraps_and_runs_back() {
        let mut clock = CaptureClock::default();
        let t0 = Instant::now();
        let video = report(0, u32::MAX - 899); // 10 ms before the wrap
        assert_eq!(clock.captured(t0, u32::MAX - 899, VIDEO, Some(video)), t0);
        // 20 ms after the report, across the wrap, arriving 20 ms later.
        assert_eq!(
            clock.captured(t0 + ms(20), 900, VIDEO, Some(video)),
            t0 + ms(20)
        );
        // 10 ms before the report (a packet the report came after), arriving just after it.
        let got = clock.captured(t0 + ms(1), u32::MAX - 1_799, VIDEO, Some(video));
        assert_eq!(got, t0 - ms(10));
    }
}
