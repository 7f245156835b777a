//! A subscription: one publication delivered to one participant over an m-line of its own.
//! It goes through negotiation states, forwards one layer of the publication (starting and
//! switching on keyframes), and rewrites what must differ for this subscriber (sequence
//! numbers, timestamps, VP8 ids, payload type) before str0m sends it.

use str0m::{media::Mid, rtp::RtpWrite, Rtc};

use crate::{
    api::TrackKind,
    ids::{PublicationId, PublicationSlot},
    media::{
        ingest::Incoming,
        munger::{Held, LayerSwitch, PtMap},
        sink::Delivery,
    },
};

/// A subscription's last allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    /// `None`: paused (for lack of bandwidth if `max` is not `None`).
    pub layer: Option<u8>,
    /// The most it could have had then (its wish, within what was sent).
    pub max: Option<u8>,
}

impl Allocated {
    pub fn starved(&self) -> bool {
        self.max.is_some() && self.layer.is_none()
    }
}

/// Where a subscription stands in the negotiation with its subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    /// Wanted; goes into the next offer.
    ToOpen,
    /// Offered on this m-line; waiting for the answer.
    Negotiating(Mid),
    /// Answered: packets flow.
    Open(Mid),
    /// Its publication ended; the m-line is stopped in the next offer.
    ToStop(Mid),
    /// Offered as stopped; forgotten when the answer arrives.
    Stopping(Mid),
}

#[derive(Debug)]
pub struct Subscription {
    /// `None` once the publication ended (its m-line is then stopped).
    pub(crate) publication: Option<PublicationSlot>,
    pub publication_id: PublicationId,
    pub kind: TrackKind,
    pub state: SubState,
    /// The highest layer the subscriber asked for (`None` = none: its tile is hidden);
    /// `u8::MAX` = the best there is.
    pub wanted: Option<u8>,
    /// Which layer goes out, and the rewriting that hides switches.
    pub switch: LayerSwitch,
    /// What the bandwidth allocator last gave it; `None` before its first allocation.
    pub allocated: Option<Allocated>,
    pts: PtMap,
}

impl Subscription {
    pub(crate) fn new(
        publication: PublicationSlot,
        publication_id: PublicationId,
        kind: TrackKind,
        layer: Option<u8>,
    ) -> Self {
        Subscription {
            publication: Some(publication),
            publication_id,
            kind,
            state: SubState::ToOpen,
            wanted: Some(u8::MAX),
            switch: LayerSwitch::new(layer),
            allocated: None,
            pts: PtMap::default(),
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, SubState::Open(_))
    }

    /// Writes `packet` to the subscriber's connection `rtc` (str0m sets SSRC, extension
    /// ids and MID when it serialises it; it is sent after the connection's next timeout).
    pub fn forward(&mut self, rtc: &mut Rtc, packet: &Incoming) -> Delivery {
        let SubState::Open(mid) = self.state else {
            return Delivery::Skipped;
        };
        let Some(pt) = self.pts.get(packet.pt, || {
            rtc.codec_config()
                .match_params(packet.params)
                .map(|p| *p.pt())
        }) else {
            return Delivery::Skipped;
        };
        let mapped = match self.switch.map(&packet.facts()) {
            Ok(mapped) => mapped,
            Err(Held::WaitingKeyframe(layer)) => return Delivery::WaitingKeyframe(layer),
            Err(Held::NotForwarded) => return Delivery::Skipped,
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Delivery::Skipped;
        };
        // Forwarded as it comes (the publisher's own pacer smoothed it): with bandwidth
        // estimation on, str0m would otherwise pace video at twice its estimate, a queue
        // and a delay per subscriber (docs/BENCHMARKS.md, "Bandwidth estimation").
        stream.set_unpaced(true);
        let mut write = RtpWrite::new(
            pt.into(),
            mapped.seq.into(),
            mapped.rtp_time,
            // What its sender reports pair RTP time with: the capture, not the arrival, or
            // the receiver's lip sync puts audio out of step with video (`media/capture.rs`).
            packet.captured,
            packet.payload.clone(),
        )
        .marker(packet.marker)
        .ext_vals(packet.ext.clone())
        .nackable(packet.kind == TrackKind::Video);
        if let (Some(ids), Some(descriptor)) = (mapped.vp8, packet.vp8) {
            let mut patch = descriptor.patch().picture_id(ids.picture_id);
            if let Some(tl0) = ids.tl0_pic_idx {
                patch = patch.tl0_pic_idx(tl0);
            }
            // A descriptor that cannot take the ids (7-bit picture id) goes as it is.
            if let Ok(patch) = patch.build() {
                write = write.vp8_patch(patch);
            }
        }
        stream.write_rtp(write);
        Delivery::Written {
            bytes: packet.payload.len() as u64,
            first: mapped.first,
        }
    }
}
