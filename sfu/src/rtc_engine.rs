//! The only module that touches the WebRTC library (`webrtc` 0.21 over the sans-IO `rtc` core).
//!
//! Everything the rest of the SFU needs is here, in SFU terms: a [`Peer`] (one browser's
//! peer connection), an [`InTrack`] (a publisher's incoming stream), an [`OutTrack`] (one
//! subscription's outgoing stream) and [`Feedback`] (what a subscriber asks of a stream).
//! Traps of the library handled here (see `../shared/notes/webrtc-rs-0.21-for-an-sfu.md` and
//! docs/sfu.md): inbound RTCP only reaches the application through [`RtcpToApplication`];
//! the answering DTLS role is forced to server; RTX is not negotiated (retransmissions stay
//! on the media SSRC, which is what the per-track NACK buffer answers from).

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use rtc::{
    interceptor::{
        Attribute, AttributedPacket, Interceptor, NackGeneratorBuilder, Packet,
        ReceiverReportBuilder, Registry, SenderReportBuilder, Slot, StreamInfo, TaggedPacket,
        TwccReceiverBuilder,
    },
    peer_connection::{
        configuration::{media_engine::MediaEngine, setting_engine::SettingEngineBuilder},
        sdp::RTCSessionDescription,
        transport::{RTCDtlsRole, RTCIceCandidateInit, RTCIceCandidateType},
    },
    rtcp::{
        self,
        payload_feedbacks::{
            full_intra_request::{FirEntry, FullIntraRequest},
            picture_loss_indication::PictureLossIndication,
        },
        transport_feedbacks::transport_layer_nack::TransportLayerNack,
    },
    rtp_transceiver::rtp_sender::{
        RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
        RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RTCRtpParameters, RtpCodecKind,
    },
    sansio::Protocol,
    shared::error::Error as RtcError,
};
use tokio::sync::{mpsc, watch};
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal, TrackLocalEvent},
        track_remote::{TrackRemote, TrackRemoteEvent},
        MediaStreamTrack,
    },
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
        RTCPeerConnectionState, RTCStatsReportEntry, StatsSelector,
    },
    rtp_transceiver::RtpSender,
};

use crate::{nack_buffer::nack_sequences, rewrite::CodecKey, rewrite::Rewriter};

/// An RTP packet as the library hands it over. Cloning it shares the payload.
pub type RtpPacket = rtc::rtp::Packet;

pub fn packet_seq(packet: &RtpPacket) -> u16 {
    packet.header.sequence_number
}

pub fn packet_payload(packet: &RtpPacket) -> &[u8] {
    &packet.payload
}

pub fn packet_len(packet: &RtpPacket) -> usize {
    packet.payload.len()
        + 12
        + packet
            .header
            .extensions
            .iter()
            .map(|e| e.payload.len() + 2)
            .sum::<usize>()
}

/// Applies one subscription's mapping to a packet. `false` = the subscriber cannot take it.
pub fn rewrite_packet(rewriter: &mut Rewriter, packet: &mut RtpPacket, resync: bool) -> bool {
    let header = &mut packet.header;
    let Some(pt) = rewriter.payload_type(header.payload_type) else {
        return false;
    };
    header.payload_type = pt;
    header.ssrc = rewriter.ssrc();
    if resync {
        rewriter.resync(header.sequence_number);
    }
    header.sequence_number = rewriter.sequence(header.sequence_number);
    header
        .extensions
        .retain_mut(|ext| match rewriter.extension_id(ext.id) {
            Some(id) => {
                ext.id = id;
                true
            }
            None => false,
        });
    fix_extension_block(header);
    true
}

/// After extensions were removed or renumbered, the stored padding no longer matches.
fn fix_extension_block(header: &mut rtc::rtp::header::Header) {
    header.extensions_padding = 0;
    if header.extensions.is_empty() {
        header.extension = false;
    } else if header
        .extensions
        .iter()
        .any(|e| e.id > 14 || e.payload.len() > 16)
    {
        header.extension_profile = rtc::rtp::header::EXTENSION_PROFILE_TWO_BYTE;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("WebRTC: {0}")]
    Rtc(#[from] RtcError),
    #[error("ICE gathering did not complete in time")]
    GatheringTimeout,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

impl Kind {
    fn of(kind: RtpCodecKind) -> Option<Kind> {
        match kind {
            RtpCodecKind::Audio => Some(Kind::Audio),
            RtpCodecKind::Video => Some(Kind::Video),
            _ => None,
        }
    }

    fn rtc(self) -> RtpCodecKind {
        match self {
            Kind::Audio => RtpCodecKind::Audio,
            Kind::Video => RtpCodecKind::Video,
        }
    }
}

/// Where peer connections bind and what address they announce.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Address the UDP sockets are bound to. Loopback binds exactly; `0.0.0.0` means every
    /// non-loopback interface (the library expands it).
    pub bind_ip: IpAddr,
    /// Put in host candidates instead of the bound address (NAT 1:1).
    pub public_ip: Option<IpAddr>,
}

/// What a peer connection reports to its owner.
pub enum PeerEvent {
    /// A publisher's stream started (first RTP packet).
    Track(Arc<dyn TrackRemote>),
    /// The connection failed or closed: the participant is gone.
    Failed,
    Connected,
}

struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    gathered: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let event = match state {
            RTCPeerConnectionState::Connected => PeerEvent::Connected,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => PeerEvent::Failed,
            _ => return,
        };
        let _ = self.events.send(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.events.send(PeerEvent::Track(track));
    }
}

const FEEDBACK: &[(&str, &str)] = &[
    ("nack", ""),
    ("nack", "pli"),
    ("ccm", "fir"),
    ("transport-cc", ""),
];

/// The codecs the SFU forwards. No RTX: publishers retransmit on the media SSRC.
fn media_engine() -> Result<MediaEngine, RtcError> {
    let mut engine = MediaEngine::default();
    let codec = |mime: &str, clock_rate, channels, fmtp: &str, pt| RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    };
    engine.register_codec(
        codec("audio/opus", 48000, 2, "minptime=10;useinbandfec=1", 111),
        RtpCodecKind::Audio,
    )?;
    for (mime, fmtp, pt) in [
        ("video/VP8", "", 96),
        ("video/VP9", "profile-id=0", 98),
        (
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
        (
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
            108,
        ),
        (
            "video/H264",
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f",
            112,
        ),
    ] {
        engine.register_codec(codec(mime, 90000, 0, fmtp, pt), RtpCodecKind::Video)?;
    }
    for (typ, parameter) in FEEDBACK {
        engine.register_feedback(
            RTCPFeedback {
                typ: (*typ).to_owned(),
                parameter: (*parameter).to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    engine.register_feedback(
        RTCPFeedback {
            typ: "transport-cc".to_owned(),
            parameter: String::new(),
        },
        RtpCodecKind::Audio,
    );
    let ext = |uri: &str| RTCRtpHeaderExtensionCapability {
        uri: uri.to_owned(),
    };
    let twcc = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        engine.register_header_extension(ext(twcc), kind, None)?;
    }
    engine.register_header_extension(
        ext("urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
        RtpCodecKind::Audio,
        None,
    )?;
    engine.register_header_extension(
        ext("urn:3gpp:video-orientation"),
        RtpCodecKind::Video,
        None,
    )?;
    Ok(engine)
}

/// Interceptors: NACKs for loss on the publisher leg, sender/receiver reports, transport-wide
/// congestion feedback to publishers, and our RTCP tap. No NACK responder: the SFU answers
/// NACKs from one buffer per publisher track instead of one copy per subscriber.
fn registry() -> Registry {
    Registry::new()
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        .with(Slot::SenderReport, SenderReportBuilder::new().build())
        .with(Slot::from(14_000), RtcpToApplication::default())
}

/// Marks the inbound RTCP the SFU acts on (keyframe requests and NACKs) for delivery to the
/// application, one feedback packet per delivery: the library routes a compound packet by its
/// first packet's media SSRC, so a compound naming two streams is split here.
#[derive(Default)]
struct RtcpToApplication {
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

fn is_feedback_we_handle(packet: &dyn rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>()
        || any.is::<FullIntraRequest>()
        || any.is::<TransportLayerNack>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpToApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
        let Packet::Rtcp(packets) = &msg.message.packet else {
            self.read.push_back(msg);
            return Ok(());
        };
        for packet in packets.iter().filter(|p| is_feedback_we_handle(p.as_ref())) {
            let mut message = AttributedPacket::new(Packet::Rtcp(vec![packet.clone()]));
            message.attributes = msg.message.attributes.clone();
            message.add(Attribute::DeliverToApplication);
            self.read.push_back(TaggedPacket {
                now: msg.now,
                transport: msg.transport,
                message,
            });
        }
        // Everything else has been seen by the interceptors below and stops here.
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), RtcError> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for RtcpToApplication {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// One browser's peer connection.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
}

const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);

impl Peer {
    /// Builds a connection whose UDP socket is bound to `net.bind_ip:port` (0 = any port).
    pub async fn new(
        net: &NetConfig,
        port: u16,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Peer, EngineError> {
        let (gathered_tx, gathered) = watch::channel(false);
        let mut settings = SettingEngineBuilder::new()
            // Answer a=setup:passive: the browser starts DTLS as soon as ICE is up, instead of
            // our ClientHello racing the answer (~170 ms slower setup, see docs/sfu.md).
            .with_answering_dtls_role(RTCDtlsRole::Server)
            // No mDNS socket per connection: browsers reach us as peer-reflexive candidates,
            // and a multicast socket fails where there is only loopback.
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_ice_timeouts(
                Some(Duration::from_secs(4)),
                Some(Duration::from_secs(6)),
                Some(Duration::from_secs(1)),
            );
        if let Some(ip) = net.public_ip {
            settings = settings.with_nat_1to1_ips(vec![ip.to_string()], RTCIceCandidateType::Host);
        }
        if net.bind_ip.is_loopback() {
            settings = settings.with_include_loopback_candidate(true);
        }
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media_engine()?)
            .with_interceptor_registry(registry())
            .with_setting_engine(settings.build())
            .with_handler(Arc::new(Handler {
                events,
                gathered: gathered_tx,
            }))
            .with_udp_addrs(vec![SocketAddr::new(net.bind_ip, port)])
            .build()
            .await?;
        Ok(Peer {
            pc: Arc::new(pc),
            gathered,
        })
    }

    async fn local_sdp(&self) -> Result<String, EngineError> {
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(GATHERING_TIMEOUT, gathered.wait_for(|done| *done))
            .await
            .map_err(|_| EngineError::GatheringTimeout)?
            .map_err(|_| EngineError::GatheringTimeout)?;
        let description = self
            .pc
            .local_description()
            .await
            .ok_or(RtcError::ErrNoRemoteDescription)?;
        Ok(description.sdp)
    }

    /// Applies a browser's offer and returns our answer (with our candidates).
    pub async fn answer(&self, offer: String) -> Result<String, EngineError> {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer)?)
            .await?;
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.local_sdp().await
    }

    /// Creates and applies an offer (server-initiated renegotiation).
    pub async fn offer(&self) -> Result<String, EngineError> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.local_sdp().await
    }

    pub async fn accept_answer(&self, answer: String) -> Result<(), EngineError> {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    }

    /// Puts back our last offer after the browser could not answer it.
    pub async fn rollback(&self) {
        let rollback = match RTCSessionDescription::rollback(None) {
            Ok(rollback) => rollback,
            Err(_) => return,
        };
        if let Err(error) = self.pc.set_local_description(rollback).await {
            tracing::debug!(%error, "rollback failed");
        }
    }

    pub async fn add_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), EngineError> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate,
                sdp_mid,
                sdp_mline_index,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    /// Describes a publisher's stream that just started on this connection.
    pub async fn in_track(&self, track: Arc<dyn TrackRemote>) -> Option<InTrack> {
        let described = self.describe(track.clone()).await;
        if described.is_none() {
            tracing::warn!("sfu: cannot forward a remote track; draining it");
            tokio::spawn(async move { while track.poll().await.is_some() {} });
        }
        described
    }

    async fn describe(&self, track: Arc<dyn TrackRemote>) -> Option<InTrack> {
        let kind = Kind::of(track.kind().await)?;
        let ssrc = *track.ssrcs().await.first()?;
        let codec = track.codec(ssrc).await?;
        let mut receiver = None;
        for candidate in self.pc.get_receivers().await {
            if Arc::ptr_eq(candidate.track(), &track) {
                receiver = Some(candidate);
                break;
            }
        }
        let parameters = match receiver {
            Some(receiver) => receiver.get_parameters().await.ok()?.rtp_parameters,
            None => return None,
        };
        let fir_only = kind == Kind::Video
            && !codec
                .rtcp_feedback
                .iter()
                .any(|fb| fb.typ == "nack" && fb.parameter == "pli")
            && codec
                .rtcp_feedback
                .iter()
                .any(|fb| fb.typ == "ccm" && fb.parameter == "fir");
        Some(InTrack {
            kind,
            ssrc,
            codec_key: CodecKey::new(&codec.mime_type, codec.clock_rate, &codec.sdp_fmtp_line),
            codecs: payload_types(&parameters),
            extensions: extension_ids(&parameters),
            codec,
            fir_only,
            track,
        })
    }

    /// Adds an outgoing stream carrying a publisher's track; takes effect at the next
    /// negotiation. `stream_id` becomes the browser-side `MediaStream.id`.
    pub async fn add_out_track(
        &self,
        source: &InTrack,
        stream_id: &str,
        track_id: &str,
        ssrc: u32,
    ) -> Result<OutTrack, EngineError> {
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            stream_id.to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            source.kind.rtc(),
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: source.codec.clone(),
                ..Default::default()
            }],
        )));
        let sender = self
            .pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await?;
        Ok(OutTrack {
            track,
            sender,
            ssrc,
        })
    }

    pub async fn remove_out_track(&self, out: &OutTrack) {
        if let Err(error) = self.pc.remove_track(&out.sender).await {
            tracing::debug!(%error, "remove_track failed");
        }
    }

    /// Round-trip time and loss reported by the browser for what we send, summed over streams.
    pub async fn stats(&self) -> PeerStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = PeerStats::default();
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::RemoteInboundRtp(remote) => {
                    if remote.round_trip_time_measurements > 0 {
                        let rtt = remote.round_trip_time;
                        stats.rtt_seconds =
                            Some(stats.rtt_seconds.map_or(rtt, |r: f64| r.max(rtt)));
                    }
                    stats.packets_lost_outbound += remote.received_rtp_stream_stats.packets_lost;
                }
                RTCStatsReportEntry::InboundRtp(inbound) => {
                    stats.packets_lost_inbound += inbound.received_rtp_stream_stats.packets_lost;
                }
                _ => {}
            }
        }
        stats
    }

    pub async fn close(&self) {
        if let Err(error) = self.pc.close().await {
            tracing::debug!(%error, "close failed");
        }
    }
}

/// Figures read from the library's statistics.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PeerStats {
    /// Latest round-trip time (from receiver reports), seconds.
    pub rtt_seconds: Option<f64>,
    /// Packets the browser reported lost on what we send it.
    pub packets_lost_outbound: i64,
    /// Packets lost on what the browser sends us.
    pub packets_lost_inbound: i64,
}

/// A publisher's incoming stream.
pub struct InTrack {
    pub kind: Kind,
    pub ssrc: u32,
    pub codec_key: CodecKey,
    /// Payload types negotiated on the publisher's leg.
    pub codecs: Vec<(u8, CodecKey)>,
    /// Header extensions negotiated on the publisher's leg.
    pub extensions: Vec<(u8, String)>,
    fir_only: bool,
    codec: RTCRtpCodec,
    track: Arc<dyn TrackRemote>,
}

impl InTrack {
    /// The next RTP packet; `None` once the connection is gone.
    ///
    /// Lifecycle events (`OnEnding`/`OnEnded`/`OnError`) are not taken as the end: the driver
    /// can keep routing packets to the same track afterwards (seen in 4-party renegotiations),
    /// and a track nobody polls fills its 256-packet channel and loses media. The stream ends
    /// when the connection closes, which ends the channel.
    pub async fn next(&self) -> Option<RtpPacket> {
        loop {
            match self.track.poll().await? {
                TrackRemoteEvent::OnRtpPacket(packet) => return Some(packet),
                other => {
                    tracing::debug!(event = ?std::mem::discriminant(&other), "sfu: remote track event")
                }
            }
        }
    }

    /// Asks the publisher for a keyframe: PLI, or FIR if that is all it negotiated.
    pub async fn request_keyframe(&self, fir_sequence: u8) {
        let packet: Box<dyn rtcp::Packet> = if self.fir_only {
            Box::new(FullIntraRequest {
                sender_ssrc: 0,
                media_ssrc: self.ssrc,
                fir: vec![FirEntry {
                    ssrc: self.ssrc,
                    sequence_number: fir_sequence,
                }],
            })
        } else {
            Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: self.ssrc,
            })
        };
        if let Err(error) = self.track.write_rtcp(vec![packet]).await {
            tracing::debug!(%error, "keyframe request failed");
        }
    }
}

/// What a subscriber asks about one outgoing stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    KeyframeRequest,
    /// Sequence numbers (as the subscriber saw them) to retransmit.
    Nack(Vec<u16>),
}

/// One subscription's outgoing stream.
pub struct OutTrack {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    pub ssrc: u32,
}

impl OutTrack {
    /// Queues a packet for sending. Waits only for this subscriber's own connection.
    pub async fn write(&self, packet: RtpPacket) -> bool {
        self.track.write_rtp(packet).await.is_ok()
    }

    /// The payload types and header-extension ids this subscriber negotiated.
    pub async fn negotiated(&self) -> Option<(Vec<(u8, CodecKey)>, Vec<(u8, String)>)> {
        let parameters = self.sender.get_parameters().await.ok()?.rtp_parameters;
        Some((payload_types(&parameters), extension_ids(&parameters)))
    }

    /// The next feedback from the subscriber about this stream; `None` once unbound.
    pub async fn next_feedback(&self) -> Option<Feedback> {
        loop {
            let packets = match self.track.poll().await? {
                TrackLocalEvent::OnRtcpPacket(packets) => packets,
                _ => continue,
            };
            for packet in packets {
                let any = packet.as_any();
                if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                    return Some(Feedback::KeyframeRequest);
                }
                if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    let seqs = nack
                        .nacks
                        .iter()
                        .flat_map(|pair| nack_sequences(pair.packet_id, pair.lost_packets))
                        .collect();
                    return Some(Feedback::Nack(seqs));
                }
            }
        }
    }
}

/// Applies a subscription's mapping to a retransmission of a packet the subscriber NACKed as
/// `out_seq`, without touching the live sequence mapping.
pub fn rewrite_retransmission(rewriter: &Rewriter, packet: &mut RtpPacket, out_seq: u16) -> bool {
    let header = &mut packet.header;
    let Some(pt) = rewriter.payload_type(header.payload_type) else {
        return false;
    };
    header.payload_type = pt;
    header.ssrc = rewriter.ssrc();
    header.sequence_number = out_seq;
    header
        .extensions
        .retain_mut(|ext| match rewriter.extension_id(ext.id) {
            Some(id) => {
                ext.id = id;
                true
            }
            None => false,
        });
    fix_extension_block(header);
    true
}

/// Payload type → codec, as negotiated on one connection.
fn payload_types(parameters: &RTCRtpParameters) -> Vec<(u8, CodecKey)> {
    parameters
        .codecs
        .iter()
        .map(|c| {
            let codec = &c.rtp_codec;
            (
                c.payload_type,
                CodecKey::new(&codec.mime_type, codec.clock_rate, &codec.sdp_fmtp_line),
            )
        })
        .collect()
}

/// Header-extension id → URI, as negotiated on one connection.
fn extension_ids(parameters: &RTCRtpParameters) -> Vec<(u8, String)> {
    parameters
        .header_extensions
        .iter()
        .filter_map(|e| Some((u8::try_from(e.id).ok()?, e.uri.clone())))
        .collect()
}
