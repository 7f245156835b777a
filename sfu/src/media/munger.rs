//! What each subscription rewrites in a forwarded packet (sans-IO).
//!
//! str0m rewrites what differs per connection when it serialises a packet (SSRC, header
//! extension ids, MID), so of a munger only two things are left to us:
//! - sequence numbers ([`SeqRebase`]): str0m's RTP mode takes the *extended* (64-bit)
//!   sequence number from the caller, and a subscriber that joins a long-running stream must
//!   start near zero (RFC 3711 ROC 0, no out-of-band signalling);
//! - payload types ([`PtMap`]): publisher PT → the subscriber's PT for the same codec.
//!
//! When a subscription starts switching between sources (simulcast layers), this is also
//! where VP8 picture-id / TL0PICIDX continuity goes (`str0m::rtp::Vp8Descriptor::patch` →
//! `RtpWrite::vp8_patch`); with one source per subscription the publisher's values are
//! already continuous, so nothing is patched today.

/// Maps a publisher's extended sequence numbers onto one subscriber's, starting at 1.
///
/// The offset is fixed at the first packet forwarded; later packets keep their spacing so a
/// packet lost upstream leaves the same gap downstream (the subscriber's NACK then finds
/// nothing in our send buffer, but the publisher's retransmission, forwarded when it
/// arrives, fills it). Packets older than the first forwarded one are not forwarded at all.
#[derive(Debug, Clone, Default)]
pub struct SeqRebase {
    /// Publisher sequence number of the first packet forwarded.
    first: Option<u64>,
}

impl SeqRebase {
    /// The subscriber-side extended sequence number for `publisher_seq`, or `None` if the
    /// packet predates this subscription's first packet.
    pub fn map(&mut self, publisher_seq: u64) -> Option<u64> {
        let first = *self.first.get_or_insert(publisher_seq);
        publisher_seq.checked_sub(first).map(|d| d + 1)
    }

    /// Whether a packet was forwarded yet.
    pub fn started(&self) -> bool {
        self.first.is_some()
    }
}

/// Payload type map of one subscription: publisher PT → subscriber PT, learnt lazily (the
/// publisher's codec is known only from its packets; the mapping itself is str0m's
/// `CodecConfig::match_params`).
#[derive(Debug, Clone)]
pub struct PtMap {
    /// 0 = not looked up yet, [`PtMap::NONE`] = the subscriber cannot receive this codec.
    slots: [u8; 128],
}

impl Default for PtMap {
    fn default() -> Self {
        PtMap { slots: [0; 128] }
    }
}

impl PtMap {
    const NONE: u8 = 0xff;

    /// The subscriber PT for `publisher_pt`, looking it up with `lookup` the first time.
    pub fn get(&mut self, publisher_pt: u8, lookup: impl FnOnce() -> Option<u8>) -> Option<u8> {
        let slot = self.slots.get_mut(usize::from(publisher_pt))?;
        if *slot == 0 {
            *slot = lookup()
                .filter(|pt| *pt != 0 && *pt < 128)
                .unwrap_or(Self::NONE);
        }
        (*slot != Self::NONE).then_some(*slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_starts_at_one_and_keeps_gaps() {
        let mut r = SeqRebase::default();
        assert!(!r.started());
        assert_eq!(r.map(70_000), Some(1));
        assert_eq!(r.map(70_001), Some(2));
        // Lost upstream: the gap stays.
        assert_eq!(r.map(70_004), Some(5));
        // A late retransmission fills it.
        assert_eq!(r.map(70_003), Some(4));
        // Older than the subscription: not forwarded.
        assert_eq!(r.map(69_999), None);
        assert!(r.started());
    }

    #[test]
    fn pt_map_looks_up_once() {
        let mut m = PtMap::default();
        let mut calls = 0;
        for (pt, expected) in [
            (96, Some(100)),
            (96, Some(100)),
            (111, None),
            (111, None),
            (200, None),
        ] {
            let got = m.get(pt, || {
                calls += 1;
                (pt == 96).then_some(100)
            });
            assert_eq!(got, expected, "pt {pt}");
        }
        // One lookup each for 96 and 111; 200 is not a payload type.
        assert_eq!(calls, 2);
    }
}
