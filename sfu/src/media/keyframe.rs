//! Keyframe requests and keyframe detection (sans-IO; time is passed in).
//!
//! A publisher is asked for a keyframe (PLI, or FIR when it negotiated only that) when a
//! subscriber starts, again while a new subscriber still waits for its first keyframe, and
//! when a subscriber asks (its own PLI/FIR). With many subscribers these requests would
//! arrive in bursts; [`KeyframeThrottle`] lets at most one through per interval and
//! remembers one that arrived too early, so it is sent as soon as the interval has passed.
//!
//! Detection is str0m's (`format::detect_*_keyframe`), with two rules of ours on top, kept
//! as tests below: a VP9 keyframe starts only on a packet that begins a frame (B bit; str0m
//! looks at the P bit alone, which every packet of a keyframe has), and an H.264 SPS counts
//! (Chromium sends SPS + PPS in a STAP-A ahead of the IDR, possibly in a packet of its own).

use std::time::{Duration, Instant};

use str0m::format::{
    detect_av1_keyframe, detect_h264_keyframe, detect_h264_nalu, detect_h265_keyframe,
    detect_vp8_keyframe, detect_vp9_keyframe, Codec,
};

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
    /// Requests received (from subscribers, joins).
    pub requested: u64,
    /// Requests actually sent upstream.
    pub sent: u64,
}

impl KeyframeThrottle {
    pub fn new(min_interval: Duration) -> Self {
        KeyframeThrottle {
            min_interval,
            last_sent: None,
            pending: false,
            requested: 0,
            sent: 0,
        }
    }

    /// A keyframe is wanted. Returns true if a request must be sent upstream now; otherwise
    /// it is remembered and [`poll`](Self::poll) returns true once the interval has passed.
    pub fn request(&mut self, now: Instant) -> bool {
        self.requested += 1;
        self.pending = true;
        self.poll(now)
    }

    /// A request is remembered and not yet sent.
    pub fn pending(&self) -> bool {
        self.pending
    }

    /// Whether a remembered request is due now. Call it on every packet or timer tick.
    pub fn poll(&mut self, now: Instant) -> bool {
        if !self.pending {
            return false;
        }
        let due = self
            .last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if due {
            self.pending = false;
            self.last_sent = Some(now);
            self.sent += 1;
        }
        due
    }

    /// When a remembered request becomes due, if one is remembered.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        // A remembered request always follows a sent one (the first is sent at once).
        self.last_sent.map(|t| t + self.min_interval)
    }

    /// A keyframe arrived: a remembered request is satisfied by it.
    pub fn keyframe_received(&mut self) {
        self.pending = false;
    }
}

/// Whether an RTP payload of `codec` is the first packet of a keyframe.
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => detect_vp8_keyframe(payload),
        Codec::Vp9 => vp9_begins_frame(payload) && detect_vp9_keyframe(payload),
        Codec::H264 => detect_h264_keyframe(payload) || detect_h264_nalu(payload, H264_SPS),
        Codec::Av1 => detect_av1_keyframe(payload),
        Codec::H265 => detect_h265_keyframe(payload),
        _ => false,
    }
}

const H264_SPS: u8 = 7;

/// VP9 payload descriptor (draft-ietf-payload-vp9) `I|P|L|F|B|E|V|Z`: B = start of a frame.
fn vp9_begins_frame(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b0| b0 & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_interval_and_the_late_one_is_not_lost() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeThrottle::new(ms(500));
        assert!(k.request(t0));
        // Ten subscribers ask within the interval: nothing goes out…
        for i in 1..=10 {
            assert!(!k.request(t0 + ms(i * 10)));
        }
        assert!(!k.poll(t0 + ms(499)));
        // …until the interval has passed, then exactly one.
        assert_eq!(k.deadline(), Some(t0 + ms(500)));
        assert!(k.poll(t0 + ms(500)));
        assert!(!k.poll(t0 + ms(501)));
        assert_eq!((k.requested, k.sent), (11, 2));
        assert_eq!(k.deadline(), None);
    }

    #[test]
    fn a_keyframe_satisfies_a_remembered_request() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(100)));
        k.keyframe_received();
        assert!(!k.poll(t0 + Duration::from_secs(1)));
        assert_eq!(k.deadline(), None);
        // A later request goes out at once.
        assert!(k.request(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn vp8_keyframes() {
        // Descriptor: X=1 S=1 PID=0; I=1 with a 15-bit picture id; then a key frame tag.
        assert!(starts_keyframe(
            Codec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00]
        ));
        // Same with P=1 (inter frame).
        assert!(!starts_keyframe(
            Codec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x11]
        ));
        // Not the start of a partition.
        assert!(!starts_keyframe(
            Codec::Vp8,
            &[0x80, 0x80, 0x81, 0x23, 0x10]
        ));
        // Minimal descriptor.
        assert!(starts_keyframe(Codec::Vp8, &[0x10, 0x10]));
        // Truncated.
        assert!(!starts_keyframe(Codec::Vp8, &[0x90, 0x80]));
        assert!(!starts_keyframe(Codec::Vp8, &[]));
    }

    #[test]
    fn vp9_keyframes_start_with_the_b_bit() {
        assert!(starts_keyframe(Codec::Vp9, &[0x08]));
        // P=1: inter-picture predicted.
        assert!(!starts_keyframe(Codec::Vp9, &[0x48]));
        // Our rule on top of str0m's: a later packet of a keyframe (P=0, B=0) does not
        // start one (a subscriber starting there would miss the frame's beginning).
        assert!(!starts_keyframe(Codec::Vp9, &[0x00]));
        assert!(detect_vp9_keyframe(&[0x00]), "str0m alone would say yes");
        assert!(!starts_keyframe(Codec::Vp9, &[]));
    }

    #[test]
    fn h264_keyframes_include_sps() {
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x00]));
        // SPS alone: our rule (Chromium sends it in a packet before the IDR).
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42, 0x00]));
        assert!(
            !detect_h264_keyframe(&[0x67, 0x42, 0x00]),
            "str0m alone would say no"
        );
        // STAP-A carrying SPS + PPS.
        assert!(starts_keyframe(
            Codec::H264,
            &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0x00]
        ));
        // FU-A start of an IDR; a middle fragment is not a start.
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn av1_and_h265_keyframes_and_others() {
        // AV1 aggregation header with N (new coded video sequence).
        assert!(starts_keyframe(Codec::Av1, &[0x18, 0x00]));
        assert!(!starts_keyframe(Codec::Av1, &[0x10, 0x00]));
        // H.265: IDR_W_RADL (type 19) vs TRAIL_R (type 1).
        assert!(starts_keyframe(Codec::H265, &[0x26, 0x01, 0x00]));
        assert!(!starts_keyframe(Codec::H265, &[0x02, 0x01, 0x00]));
        assert!(!starts_keyframe(Codec::Opus, &[0x10]));
    }
}
