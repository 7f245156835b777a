//! Keyframe requests and keyframe detection (sans-IO; time is passed in).
//!
//! A publisher is asked for a keyframe (PLI, or FIR when it negotiated only that) when a
//! subscriber starts, again while a new subscriber still waits for its first keyframe, and
//! when a subscriber asks (its own PLI/FIR). With many subscribers these requests would arrive in
//! bursts; [`KeyframeThrottle`] lets at most one through per interval and remembers one that
//! arrived too early, so it is sent as soon as the interval has passed.

use std::time::{Duration, Instant};

/// Default minimum spacing of keyframe requests to one publisher track.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
    /// Requests received (from subscribers, joins, congestion).
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

    /// A keyframe is wanted. Returns true if a request must be sent upstream now; otherwise it
    /// is remembered and [`poll`](Self::poll) returns true once the interval has passed.
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
        Some(
            self.last_sent
                .map_or_else(Instant::now, |t| t + self.min_interval),
        )
    }

    /// A keyframe arrived: a remembered request is satisfied by it.
    pub fn keyframe_received(&mut self) {
        self.pending = false;
    }
}

/// Video codecs whose keyframes we can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Other,
}

impl VideoCodec {
    pub fn from_mime(mime: &str) -> Self {
        match mime.to_ascii_lowercase().as_str() {
            "video/vp8" => VideoCodec::Vp8,
            "video/vp9" => VideoCodec::Vp9,
            "video/h264" => VideoCodec::H264,
            _ => VideoCodec::Other,
        }
    }
}

/// Whether an RTP payload is the first packet of a keyframe.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::Vp9 => vp9_starts_keyframe(payload),
        VideoCodec::H264 => h264_has_keyframe(payload),
        VideoCodec::Other => false,
    }
}

/// RFC 7741 payload descriptor, then the VP8 frame tag's P bit (0 = key frame).
fn vp8_starts_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let (x, s, pid) = (b0 & 0x80 != 0, b0 & 0x10 != 0, b0 & 0x07);
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&b1) = p.get(i) else { return false };
        i += 1;
        if b1 & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if b1 & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if b1 & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

/// VP9 payload descriptor (draft-ietf-payload-vp9): B (start of frame) set, P (inter-picture
/// predicted) clear.
fn vp9_starts_keyframe(p: &[u8]) -> bool {
    p.first()
        .is_some_and(|&b0| b0 & 0x40 == 0 && b0 & 0x08 != 0)
}

/// RFC 6184: an IDR slice or SPS, alone, in a STAP-A, or starting a FU-A.
fn h264_has_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let is_key = |nal_type: u8| nal_type == 5 || nal_type == 7;
    match b0 & 0x1f {
        24 => {
            // STAP-A: (16-bit size, NAL)*
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                if is_key(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
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
        let mut k = KeyframeThrottle::new(DEFAULT_MIN_INTERVAL);
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(100)));
        k.keyframe_received();
        assert!(!k.poll(t0 + Duration::from_secs(1)));
        // A later request goes out at once.
        assert!(k.request(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn vp8_keyframes() {
        // Descriptor: X=1 S=1 PID=0; I=1 with a 15-bit picture id; then a key frame tag.
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x10, 0x02, 0x00]
        ));
        // Same with P=1 (inter frame).
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x11]
        ));
        // Not the start of a partition.
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x80, 0x80, 0x81, 0x23, 0x10]
        ));
        // Minimal descriptor.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x10]));
        // Truncated.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn h264_and_vp9_keyframes() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x00]));
        // STAP-A carrying SPS.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x18, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0x00]
        ));
        // FU-A start of an IDR.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05, 0x00]));
        assert!(starts_keyframe(VideoCodec::Vp9, &[0x08]));
        assert!(!starts_keyframe(VideoCodec::Vp9, &[0x48]));
        assert!(!starts_keyframe(VideoCodec::Other, &[0x10]));
    }
}
