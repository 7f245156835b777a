//! Per-subscriber RTP header rewriting (sans-IO).
//!
//! Every browser negotiates its own SSRCs, payload types and header-extension ids, so a packet
//! received from a publisher cannot be written to a subscriber unchanged: the subscriber's
//! connection drops packets whose SSRC, payload type or extension ids it did not negotiate
//! (see docs/sfu.md). A [`Rewriter`] holds one subscription's mapping:
//!
//! - SSRC: the subscriber-side SSRC chosen when the subscription is created;
//! - payload type: publisher PT → subscriber PT, matched by codec (mime type and, for H.264,
//!   profile and packetization mode);
//! - header extensions: publisher id → subscriber id, matched by URI, keeping only the
//!   end-to-end extensions in [`FORWARDED_EXTENSIONS`] (hop-by-hop ones such as transport-cc,
//!   abs-send-time and the MID/RID are never forwarded);
//! - sequence numbers: shifted by an offset so that packets the SFU decides not to send (a
//!   congested subscriber's queue, see [`crate::subscriber_queue`]) leave no gap the browser
//!   would NACK.

/// Header extensions that describe the media itself and survive a hop. Everything else is
/// hop-by-hop and is stripped.
pub const FORWARDED_EXTENSIONS: &[&str] = &[
    "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "urn:3gpp:video-orientation",
    "urn:ietf:params:rtp-hdrext:toffset",
    "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    "http://www.webrtc.org/experiments/rtp-hdrext/color-space",
];

/// What identifies a codec across two negotiations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecKey {
    /// Lower-case mime type, e.g. `video/vp8`.
    pub mime: String,
    pub clock_rate: u32,
    /// H.264 `profile-level-id` profile part and `packetization-mode`, VP9 `profile-id`;
    /// empty for other codecs.
    pub params: String,
}

impl CodecKey {
    pub fn new(mime: &str, clock_rate: u32, fmtp: &str) -> Self {
        let mime = mime.to_ascii_lowercase();
        let param = |name: &str| {
            fmtp.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_ascii_lowercase())
        };
        let params = match mime.as_str() {
            "video/h264" => {
                // The profile (first 2 bytes of profile-level-id) and packetization mode must
                // match; the level may differ.
                let profile = param("profile-level-id")
                    .map(|p| p.chars().take(4).collect::<String>())
                    .unwrap_or_else(|| "4200".into());
                let mode = param("packetization-mode").unwrap_or_else(|| "0".into());
                format!("{profile};{mode}")
            }
            "video/vp9" => param("profile-id").unwrap_or_else(|| "0".into()),
            _ => String::new(),
        };
        CodecKey {
            mime,
            clock_rate,
            params,
        }
    }

    /// RTX/RED/ULPFEC/FlexFEC are not media codecs and are never mapped.
    pub fn is_media(&self) -> bool {
        !matches!(
            self.mime.as_str(),
            "video/rtx"
                | "audio/rtx"
                | "video/red"
                | "audio/red"
                | "video/ulpfec"
                | "video/flexfec-03"
        )
    }
}

/// One subscription's header mapping.
#[derive(Debug, Clone)]
pub struct Rewriter {
    ssrc: u32,
    /// Indexed by publisher payload type; 0 = not mapped (0 is PCMU, never forwarded here).
    pt: [u8; 128],
    /// Indexed by publisher extension id; 0 = strip.
    ext: [u8; 256],
    seq_offset: u16,
    /// Output sequence number of the last packet written, once one was.
    last_out: Option<u16>,
    /// Publisher sequence number from which the current offset applies; NACKs for older
    /// packets cannot be mapped back and are ignored.
    epoch_start: Option<u16>,
}

impl Rewriter {
    /// `publisher_*`/`subscriber_*` are the negotiated (payload type, codec) and (id, URI)
    /// lists of both legs.
    pub fn new(
        ssrc: u32,
        publisher_codecs: &[(u8, CodecKey)],
        subscriber_codecs: &[(u8, CodecKey)],
        publisher_extensions: &[(u8, &str)],
        subscriber_extensions: &[(u8, &str)],
    ) -> Self {
        let mut pt = [0u8; 128];
        for (from, key) in publisher_codecs.iter().filter(|(_, k)| k.is_media()) {
            if let Some((to, _)) = subscriber_codecs.iter().find(|(_, k)| k == key) {
                if let Some(slot) = pt.get_mut(usize::from(*from)) {
                    *slot = *to;
                }
            }
        }
        let mut ext = [0u8; 256];
        for (from, uri) in publisher_extensions {
            if !FORWARDED_EXTENSIONS.contains(uri) {
                continue;
            }
            if let Some((to, _)) = subscriber_extensions.iter().find(|(_, u)| u == uri) {
                ext[usize::from(*from)] = *to;
            }
        }
        Rewriter {
            ssrc,
            pt,
            ext,
            seq_offset: 0,
            last_out: None,
            epoch_start: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The subscriber's payload type for a publisher payload type, if the subscriber can
    /// decode that codec.
    pub fn payload_type(&self, publisher_pt: u8) -> Option<u8> {
        match self.pt.get(usize::from(publisher_pt)) {
            Some(0) | None => None,
            Some(&pt) => Some(pt),
        }
    }

    /// The subscriber's id for a publisher header-extension id; `None` = strip it.
    pub fn extension_id(&self, publisher_id: u8) -> Option<u8> {
        match self.ext[usize::from(publisher_id)] {
            0 => None,
            id => Some(id),
        }
    }

    /// Output sequence number for a publisher sequence number (and remembers it as sent).
    pub fn sequence(&mut self, publisher_seq: u16) -> u16 {
        if self.epoch_start.is_none() {
            self.epoch_start = Some(publisher_seq);
        }
        let out = publisher_seq.wrapping_add(self.seq_offset);
        if self.last_out.is_none_or(|last| seq_newer(out, last)) {
            self.last_out = Some(out);
        }
        out
    }

    /// Called after packets were skipped on purpose: the next packet written, `publisher_seq`,
    /// follows the last one sent without a gap.
    pub fn resync(&mut self, publisher_seq: u16) {
        if let Some(last) = self.last_out {
            self.seq_offset = last.wrapping_add(1).wrapping_sub(publisher_seq);
        }
        self.epoch_start = Some(publisher_seq);
    }

    /// The publisher sequence number behind a sequence number the subscriber NACKed, if it
    /// was sent under the current mapping.
    pub fn original_sequence(&self, out_seq: u16) -> Option<u16> {
        let original = out_seq.wrapping_sub(self.seq_offset);
        let start = self.epoch_start?;
        let last = self.last_out?.wrapping_sub(self.seq_offset);
        let in_epoch = !seq_newer(start, original) && !seq_newer(original, last);
        in_epoch.then_some(original)
    }
}

/// RFC 3550 serial-number comparison: is `a` newer than `b`?
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8() -> CodecKey {
        CodecKey::new("video/VP8", 90000, "")
    }

    fn rewriter() -> Rewriter {
        let h264 = CodecKey::new(
            "video/H264",
            90000,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        );
        Rewriter::new(
            0xdead_beef,
            &[
                (96, vp8()),
                (97, CodecKey::new("video/rtx", 90000, "apt=96")),
                (102, h264),
            ],
            &[
                (120, vp8()),
                (121, CodecKey::new("video/rtx", 90000, "apt=120")),
                (
                    125,
                    CodecKey::new(
                        "video/h264",
                        90000,
                        "profile-level-id=42e034;packetization-mode=1",
                    ),
                ),
                (
                    127,
                    CodecKey::new(
                        "video/h264",
                        90000,
                        "profile-level-id=42e01f;packetization-mode=0",
                    ),
                ),
            ],
            &[
                (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
                (
                    3,
                    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                ),
                (4, "urn:ietf:params:rtp-hdrext:sdes:mid"),
                (13, "urn:3gpp:video-orientation"),
            ],
            &[
                (5, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
                (
                    3,
                    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                ),
                (1, "urn:ietf:params:rtp-hdrext:sdes:mid"),
            ],
        )
    }

    #[test]
    fn payload_types_follow_the_codec_not_the_number() {
        let r = rewriter();
        assert_eq!(r.payload_type(96), Some(120));
        // H.264: same profile and packetization mode, any level.
        assert_eq!(r.payload_type(102), Some(125));
        // RTX is a repair format, never mapped; unknown PTs are dropped.
        assert_eq!(r.payload_type(97), None);
        assert_eq!(r.payload_type(111), None);
        assert_eq!(r.payload_type(200), None);
        assert_eq!(r.ssrc(), 0xdead_beef);
    }

    #[test]
    fn extensions_are_mapped_by_uri_and_hop_by_hop_ones_stripped() {
        let r = rewriter();
        assert_eq!(r.extension_id(1), Some(5));
        // transport-cc and MID are per-hop even when both legs negotiated them.
        assert_eq!(r.extension_id(3), None);
        assert_eq!(r.extension_id(4), None);
        // Forwardable, but the subscriber did not negotiate it.
        assert_eq!(r.extension_id(13), None);
        assert_eq!(r.extension_id(200), None);
    }

    #[test]
    fn sequence_numbers_stay_contiguous_across_a_skip() {
        let mut r = rewriter();
        assert_eq!(r.sequence(65534), 65534);
        assert_eq!(r.sequence(65535), 65535);
        assert_eq!(r.sequence(0), 0);
        // Packets 1..=9 were dropped for a congested subscriber; 10 starts a keyframe.
        r.resync(10);
        assert_eq!(r.sequence(10), 1);
        assert_eq!(r.sequence(11), 2);
        assert_eq!(r.original_sequence(2), Some(11));
        // Sent before the resync: cannot be mapped back.
        assert_eq!(r.original_sequence(0), None);
        // Never sent yet.
        assert_eq!(r.original_sequence(3), None);
    }

    #[test]
    fn nack_mapping_before_anything_was_sent() {
        let r = rewriter();
        assert_eq!(r.original_sequence(5), None);
    }

    #[test]
    fn serial_number_comparison_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(!seq_newer(7, 7));
    }
}
