//! A subscription: one publication delivered to one participant over an m-line of its own.
//! It goes through negotiation states, starts video on a keyframe, and rewrites what must
//! differ for this subscriber (sequence numbers, payload type) before str0m sends it.

use str0m::{media::Mid, rtp::RtpWrite, Rtc};

use crate::{
    api::TrackKind,
    ids::{PublicationId, PublicationSlot},
    media::{
        ingest::Incoming,
        munger::{PtMap, SeqRebase},
        sink::Delivery,
    },
};

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
    seq: SeqRebase,
    pts: PtMap,
    /// Video starts on a keyframe: what comes before cannot be decoded.
    pub waiting_keyframe: bool,
}

impl Subscription {
    pub(crate) fn new(
        publication: PublicationSlot,
        publication_id: PublicationId,
        kind: TrackKind,
    ) -> Self {
        Subscription {
            publication: Some(publication),
            publication_id,
            kind,
            state: SubState::ToOpen,
            seq: SeqRebase::default(),
            pts: PtMap::default(),
            waiting_keyframe: kind == TrackKind::Video,
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
        if self.waiting_keyframe && !packet.keyframe {
            return Delivery::WaitingKeyframe;
        }
        let Some(pt) = self.pts.get(packet.pt, || {
            rtc.codec_config()
                .match_params(packet.params)
                .map(|p| *p.pt())
        }) else {
            return Delivery::Skipped;
        };
        let first = !self.seq.started();
        let Some(seq) = self.seq.map(packet.seq) else {
            return Delivery::Skipped;
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return Delivery::Skipped;
        };
        stream.write_rtp(
            RtpWrite::new(
                pt.into(),
                seq.into(),
                packet.rtp_time,
                packet.arrived,
                packet.payload.clone(),
            )
            .marker(packet.marker)
            .ext_vals(packet.ext.clone())
            .nackable(packet.kind == TrackKind::Video),
        );
        self.waiting_keyframe = false;
        Delivery::Written {
            bytes: packet.payload.len() as u64,
            first,
        }
    }
}
