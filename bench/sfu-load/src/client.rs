//! A participant on the `webrtc` crate: joins `/sfu`, answers the server's `update`s,
//! publishes synthetic audio + video (optional; the video as simulcast layers, optionally),
//! asks for a video layer of every publisher (optional) and reads every stream it receives.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use rtc::{
    interceptor::Registry,
    peer_connection::{
        configuration::{
            interceptor_registry::{
                configure_simulcast_extension_headers, configure_twcc_receiver_only,
            },
            media_engine::MediaEngine,
            setting_engine::SettingEngineBuilder,
        },
        sdp::RTCSessionDescription,
    },
    rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate,
    rtp_transceiver::{
        rtp_sender::{
            RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
            RTCRtpEncodingParameters, RtpCodecKind,
        },
        RTCRtpTransceiverDirection, RTCRtpTransceiverInit,
    },
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use webrtc::{
    media_stream::{
        track_local::{static_rtp::TrackLocalStaticRTP, TrackLocal},
        track_remote::{TrackRemote, TrackRemoteEvent},
        MediaStreamTrack,
    },
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
        RTCPeerConnectionState,
    },
};

use crate::{
    media::{self, Stamp, SIMULCAST},
    sio::Sio,
    stats::Stats,
};

pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
/// SSRCs a participant takes: audio, then up to three video layers.
pub const SSRCS_PER_CLIENT: u32 = 4;

const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// How a participant of the load takes part.
#[derive(Debug, Clone, Copy, Default)]
pub struct Role {
    /// Sends audio and video (else only receives).
    pub publish: bool,
    /// Sends its video as the simulcast layers of [`SIMULCAST`], each packet naming its layer
    /// with the MID and RID header extensions, as a browser does.
    pub simulcast: bool,
    /// Sends transport-wide congestion control feedback on what it receives, as a browser
    /// does (the server's bandwidth estimation works on it).
    pub feedback: bool,
    /// Reports a receiver estimate (REMB) on each video it receives every [`REMB_INTERVAL`].
    pub remb: bool,
    /// The `layer` it asks for, for every publisher in the room when it joins (`low`,
    /// `medium`, `high`); `None`: the server's default, the best.
    pub wants: Option<&'static str>,
}

fn media_engine() -> Result<MediaEngine> {
    let mut engine = MediaEngine::default();
    let codec = |mime: &str, clock_rate, channels, fmtp: &str, pt, fb: Vec<RTCPFeedback>| {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: mime.to_owned(),
                clock_rate,
                channels,
                sdp_fmtp_line: fmtp.to_owned(),
                rtcp_feedback: fb,
            },
            payload_type: pt,
        }
    };
    engine.register_codec(
        codec(
            "audio/opus",
            48000,
            2,
            "minptime=10;useinbandfec=1",
            OPUS_PT,
            vec![],
        ),
        RtpCodecKind::Audio,
    )?;
    let pli = RTCPFeedback {
        typ: "nack".into(),
        parameter: "pli".into(),
    };
    engine.register_codec(
        codec("video/VP8", 90000, 0, "", VP8_PT, vec![pli]),
        RtpCodecKind::Video,
    )?;
    Ok(engine)
}

struct Handler {
    gathered: watch::Sender<bool>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

pub struct Client {
    pub sio: Arc<Sio>,
    pc: Arc<dyn PeerConnection>,
    pub audio: Option<Arc<TrackLocalStaticRTP>>,
    pub video: Option<Arc<TrackLocalStaticRTP>>,
    pub audio_ssrc: u32,
    /// One per video layer (one without simulcast).
    pub video_ssrcs: Vec<u32>,
    /// Per video layer, the header extensions (negotiated id, value) its packets carry.
    pub video_extensions: Vec<Vec<(u8, Vec<u8>)>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The id `sdp` gives header extension `uri` in its first `kind` (`audio`/`video`) section.
fn extmap_id(sdp: &str, kind: &str, uri: &str) -> Option<u8> {
    section(sdp, kind)?.find_map(|line| {
        let (id, rest) = line.strip_prefix("a=extmap:")?.split_once(' ')?;
        (rest.split_whitespace().next()? == uri).then(|| id.split('/').next()?.parse().ok())?
    })
}

/// The `a=mid` of the first `kind` section of `sdp`.
fn mid_of(sdp: &str, kind: &str) -> Option<String> {
    section(sdp, kind)?.find_map(|line| line.strip_prefix("a=mid:").map(str::to_owned))
}

fn section<'a>(sdp: &'a str, kind: &str) -> Option<impl Iterator<Item = &'a str>> {
    let start = sdp.find(&format!("m={kind} "))?;
    let body = &sdp[start..];
    let end = body[2..].find("\nm=").map_or(body.len(), |e| e + 2);
    Some(body[..end].lines().map(|l| l.trim_end_matches('\r')))
}

async fn local_sdp(
    pc: &Arc<dyn PeerConnection>,
    gathered: &mut watch::Receiver<bool>,
) -> Result<String> {
    tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g))
        .await
        .context("ICE gathering")??;
    Ok(pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?
        .sdp)
}

impl Client {
    /// Connects, joins `room` as `name` (taking part as `role` says), and starts reading
    /// what it receives into `stats`.
    pub async fn join(
        server: &str,
        room: &str,
        name: &str,
        role: Role,
        ssrc_base: u32,
        stats: Arc<Stats>,
    ) -> Result<Client> {
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (tracks_tx, mut tracks_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let mut engine = media_engine()?;
        let mut registry = Registry::new();
        if role.feedback {
            registry = configure_twcc_receiver_only(registry, &mut engine)?;
        }
        if role.simulcast {
            configure_simulcast_extension_headers(&mut engine)?;
        }
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(engine)
                .with_interceptor_registry(registry)
                .with_setting_engine(settings)
                .with_handler(Arc::new(Handler {
                    gathered: gathered_tx,
                    tracks: tracks_tx,
                    state: state_tx,
                }))
                .with_udp_addrs(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
                .build()
                .await?,
        );
        let audio_ssrc = ssrc_base;
        let layers = if role.simulcast { SIMULCAST.len() } else { 1 };
        let video_ssrcs: Vec<u32> = (1..=layers as u32).map(|l| ssrc_base + l).collect();
        let (mut audio, mut video) = (None, None);
        if role.publish {
            let encoding =
                |mime: &str, clock, channels, ssrc, rid: &str| RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        rid: rid.to_owned(),
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: RTCRtpCodec {
                        mime_type: mime.into(),
                        clock_rate: clock,
                        channels,
                        ..Default::default()
                    },
                    ..Default::default()
                };
            let audio_encodings = vec![encoding("audio/opus", 48000, 2, audio_ssrc, "")];
            let video_encodings = match role.simulcast {
                // Lowest first: the order in which the server numbers the layers.
                true => SIMULCAST
                    .iter()
                    .zip(&video_ssrcs)
                    .map(|(layer, &ssrc)| encoding("video/VP8", 90000, 0, ssrc, layer.rid))
                    .collect(),
                false => vec![encoding("video/VP8", 90000, 0, video_ssrcs[0], "")],
            };
            for (kind, mime, encodings) in [
                (RtpCodecKind::Audio, "audio/opus", audio_encodings),
                (RtpCodecKind::Video, "video/VP8", video_encodings),
            ] {
                let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                    name.to_owned(),
                    format!("{name}-{mime}"),
                    format!("{name}-{mime}"),
                    kind,
                    encodings,
                )));
                pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
                if kind == RtpCodecKind::Audio {
                    audio = Some(track);
                } else {
                    video = Some(track);
                }
            }
        } else {
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                pc.add_transceiver_from_kind(
                    kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .await?;
            }
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let sdp = local_sdp(&pc, &mut gathered).await?;

        let (sio, mut events) = tokio::time::timeout(Duration::from_secs(10), Sio::connect(server))
            .await
            .context("signaling connect")??;
        let sio = Arc::new(sio);
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            sio.request("join", json!({"room": room, "name": name, "sdp": sdp})),
        )
        .await
        .context("join ack")??;
        let answer = reply["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("join ack without sdp: {reply}"))?;
        let video_extensions = if !(role.publish && role.simulcast) {
            vec![vec![]]
        } else {
            let mid = mid_of(answer, "video")
                .ok_or_else(|| anyhow!("the answer has no video section"))?;
            let id = |uri| {
                extmap_id(answer, "video", uri)
                    .ok_or_else(|| anyhow!("the answer did not take {uri}"))
            };
            let (mid_id, rid_id) = (id(MID_URI)?, id(RID_URI)?);
            SIMULCAST
                .iter()
                .map(|layer| {
                    vec![
                        (mid_id, mid.as_bytes().to_vec()),
                        (rid_id, layer.rid.as_bytes().to_vec()),
                    ]
                })
                .collect()
        };
        // The server may send its first `update` right after the ack: apply the answer first
        // (a browser chains these operations; the library does not).
        let (answered_tx, mut answered) = watch::channel(false);
        let update_events = {
            let pc = pc.clone();
            let sio = sio.clone();
            tokio::spawn(async move {
                if answered.wait_for(|a| *a).await.is_err() {
                    return;
                }
                while let Some(event) = events.recv().await {
                    if event.name != "update" {
                        continue;
                    }
                    let Some(ack) = event.ack else { continue };
                    let reply = match tokio::time::timeout(
                        Duration::from_secs(5),
                        answer_update(&pc, &event.data),
                    )
                    .await
                    {
                        Ok(Ok(sdp)) => json!({"type": "answer", "sdp": sdp}),
                        Ok(Err(e)) => {
                            json!({"error": {"code": "negotiation_failed", "message": e.to_string()}})
                        }
                        Err(_) => {
                            json!({"error": {"code": "negotiation_failed", "message": "timed out"}})
                        }
                    };
                    sio.ack(ack, reply);
                }
            })
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?),
        )
        .await
        .context("applying the answer")??;
        let _ = answered_tx.send(true);
        if let Some(quality) = role.wants {
            let publishers = reply["participants"].as_array().into_iter().flatten();
            for p in publishers.filter(|p| p["video"] == json!(true)) {
                let wish = json!({"participant": p["id"], "quality": quality, "source": "camera"});
                let reply = sio.request("layer", wish).await?;
                if reply["ok"] != json!(true) {
                    bail!("layer refused: {reply}");
                }
            }
        }

        let mut tasks = vec![update_events];
        // Remote streams: read and account.
        {
            let stats = stats.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(track) = tracks_rx.recv().await {
                    let stats = stats.clone();
                    tokio::spawn(read_track(track, stats, role.remb));
                }
            }));
        }
        Ok(Client {
            sio,
            pc,
            audio,
            video,
            audio_ssrc,
            video_ssrcs,
            video_extensions,
            state,
            tasks,
        })
    }

    pub async fn connected(&self, within: Duration) -> Result<()> {
        let mut state = self.state.clone();
        tokio::time::timeout(
            within,
            state.wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .context("media connection")??;
        Ok(())
    }

    /// `leave`, then close the socket and the connection.
    pub async fn leave(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sio.request("leave", json!({})))
            .await;
        self.sio.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pc.close()).await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn answer_update(pc: &Arc<dyn PeerConnection>, data: &Value) -> Result<String> {
    let sdp = data["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("update without sdp"))?;
    pc.set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?)
        .await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    Ok(pc
        .local_description()
        .await
        .ok_or_else(|| anyhow!("no local description"))?
        .sdp)
}

/// How often a participant with [`Role::remb`] reports its estimate on each video (Chromium
/// sent one about every 220 ms with two remote videos).
const REMB_INTERVAL: Duration = Duration::from_millis(400);
/// The estimate it reports: more than any layer of the load takes.
const REMB_BPS: f32 = 10_000_000.0;

async fn read_track(track: Arc<dyn TrackRemote>, stats: Arc<Stats>, remb: bool) {
    let video = track.kind().await == RtpCodecKind::Video;
    stats.stream_opened(video);
    let mut report = tokio::time::interval(REMB_INTERVAL);
    let mut ssrc = None;
    loop {
        tokio::select! {
            event = track.poll() => match event {
                None => break,
                Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                    ssrc = Some(packet.header.ssrc);
                    if let Some(stamp) = Stamp::read(&packet.payload) {
                        stats.received(video, stamp, media::now_us());
                    }
                }
                Some(_) => {}
            },
            _ = report.tick(), if remb && video && ssrc.is_some() => {
                let remb = ReceiverEstimatedMaximumBitrate {
                    sender_ssrc: 1,
                    bitrate: REMB_BPS,
                    ssrcs: ssrc.into_iter().collect(),
                };
                if track.write_rtcp(vec![Box::new(remb)]).await.is_err() {
                    break;
                }
            }
        }
    }
    stats.stream_closed(video);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
        a=extmap:3/recvonly urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
        a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
        a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n";

    #[test]
    fn extension_ids_and_mid_come_from_the_right_section() {
        assert_eq!(extmap_id(ANSWER, "video", MID_URI), Some(3));
        assert_eq!(extmap_id(ANSWER, "audio", MID_URI), Some(4));
        assert_eq!(
            extmap_id(ANSWER, "video", RID_URI),
            Some(10),
            "not the repaired one"
        );
        assert_eq!(extmap_id(ANSWER, "audio", RID_URI), None);
        assert_eq!(mid_of(ANSWER, "video").as_deref(), Some("1"));
        assert_eq!(mid_of(ANSWER, "application"), None);
    }
}
