//! The driver end to end, on a real loopback socket and the real clock: a str0m client
//! joins through the façade, its media connects, it leaves, and nothing is left. (What
//! the core does over time is tested on virtual time in `tests/core`.)

use std::{
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    time::{Duration, Instant},
};

use std::sync::mpsc::TryRecvError;

use sfu::{
    Joined, NetConfig, ParticipantEvent, ParticipantId, Sfu, SfuConfig, SfuError, TapOutput,
    TrackKind,
};
use str0m::{
    change::{SdpAnswer, SdpOffer},
    media::{Direction, Frequency, MediaKind, MediaTime, Mid},
    net::{Protocol, Receive},
    Candidate, Event, Input, Output, Rtc,
};
use tokio::net::UdpSocket;

fn loopback() -> SfuConfig {
    SfuConfig::new(NetConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        public_ip: None,
    })
}

/// A str0m client joined through the façade, its media connected.
struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    id: ParticipantId,
    joined: Joined,
    audio: Mid,
}

impl Client {
    async fn join(sfu: &Sfu) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local: SocketAddr = socket.local_addr().unwrap();
        let mut rtc = Rtc::new(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().unwrap();

        let request = sfu.join("r", "Ada", offer.to_sdp_string(), Default::default());
        let id = request.id;
        let joined = request.joined().await.unwrap();
        assert_eq!(joined.id, id, "the id is known before the answer");
        assert!(joined.answer.contains("typ host"));
        assert_eq!(sfu.counts(), (1, 1));
        let answer = SdpAnswer::from_sdp_string(&joined.answer).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        sfu.ready(id);
        let mut client = Client {
            rtc,
            socket,
            local,
            id,
            joined,
            audio,
        };
        let connected = client.run(sfu, Duration::from_secs(10), true).await;
        assert!(connected, "no connection within 10 s");
        client
    }

    /// Drives the client for `time` (or until it connects, with `until_connected`); true if
    /// it connected.
    async fn run(&mut self, sfu: &Sfu, time: Duration, until_connected: bool) -> bool {
        let end = Instant::now() + time;
        let mut buf = vec![0u8; 2048];
        loop {
            let wake = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        self.socket
                            .send_to(&t.contents, t.destination)
                            .await
                            .unwrap();
                    }
                    Output::Timeout(at) => break at,
                    Output::Event(Event::Connected) if until_connected => return true,
                    Output::Event(_) => {}
                }
            };
            if Instant::now() >= end {
                return false;
            }
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => {
                    let (n, source) = received.unwrap();
                    let receive = Receive::new(Protocol::Udp, source, self.local, &buf[..n]).unwrap();
                    self.rtc.handle_input(Input::Receive(Instant::now(), receive)).unwrap();
                }
                _ = tokio::time::sleep_until(wake.min(end).into()) => {
                    self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
                }
                event = self.joined.events.recv() => match event.expect("events channel open") {
                    ParticipantEvent::Update { round, sdp } => {
                        let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                        let ours = self.rtc.sdp_api().accept_offer(offer).unwrap();
                        sfu.answer(self.id, round, Ok(ours.to_sdp_string()));
                    }
                    ParticipantEvent::Participants(_)
                    | ParticipantEvent::Speakers(_)
                    | ParticipantEvent::PublishLayers(_)
                    | ParticipantEvent::VideoPaused { .. } => {}
                    ParticipantEvent::Failed => panic!("the media connection failed"),
                    ParticipantEvent::Removed { by, .. } => panic!("removed by {by}"),
                },
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_through_the_driver_and_leaves_nothing_behind() {
    let sfu = Sfu::new(loopback()).unwrap();
    let client = Client::join(&sfu).await;
    let id = client.id;
    let report = sfu.report().await;
    assert_eq!(report.rooms[0].participants[0].id, id);
    assert_eq!(report.media_address, sfu.media_addr().to_string());

    sfu.leave(id).await;
    sfu.leave(id).await; // idempotent
    assert_eq!(sfu.counts(), (0, 0));
    // `report` may reuse the one above (within 100 ms), made before the leave; a fresh one is
    // made now, whatever the time, and is the one reused next.
    let report = sfu.fresh_report().await;
    assert_eq!((report.joins, report.leaves, report.tasks), (1, 1, 0));
    assert_eq!(sfu.report().await.leaves, 1);
}

/// A tap's consumer that does not keep up loses the tap: its queue is never waited for (the
/// media thread goes on), the tap is detached and its sender dropped without `Ended`, which is
/// how the consumer learns it fell behind. One that keeps up gets `Ended` when the track ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_consumer_that_falls_behind_loses_its_tap() {
    let sfu = Sfu::new(loopback()).unwrap();
    let mut client = Client::join(&sfu).await;
    let (slow, slow_rx) = std::sync::mpsc::sync_channel(8);
    let (fast, kept_up) = std::sync::mpsc::sync_channel(10_000);
    sfu.attach_tap(client.id, TrackKind::Audio, slow)
        .await
        .unwrap();
    sfu.attach_tap(client.id, TrackKind::Audio, fast)
        .await
        .unwrap();
    // A second of audio, 50 packets, into taps that hold 8 and 10 000.
    let mid = client.audio;
    let pt = client
        .rtc
        .writer(mid)
        .unwrap()
        .payload_params()
        .next()
        .unwrap()
        .pt();
    for i in 0..50u64 {
        let time = MediaTime::new(i * 960, Frequency::FORTY_EIGHT_KHZ);
        let writer = client.rtc.writer(mid).unwrap();
        writer
            .write(pt, Instant::now(), time, vec![0xFC, 0xFF, 0xFE])
            .unwrap();
        client.run(&sfu, Duration::from_millis(20), false).await;
    }
    let stalled: Vec<TapOutput> = slow_rx.try_iter().collect();
    assert_eq!(stalled.len(), 8, "the full queue was not waited for");
    assert!(
        stalled.iter().all(|o| matches!(o, TapOutput::Packet(_))),
        "no Ended"
    );
    assert_eq!(
        slow_rx.try_recv().unwrap_err(),
        TryRecvError::Disconnected,
        "the tap was taken away"
    );
    let got = kept_up
        .try_iter()
        .filter(|o| matches!(o, TapOutput::Packet(_)))
        .count();
    assert!(got >= 40, "the consumer that kept up got {got} of 50");
    sfu.leave(client.id).await;
    assert!(kept_up
        .recv_timeout(Duration::from_secs(1))
        .is_ok_and(|o| matches!(o, TapOutput::Ended(_))));
}

#[test]
fn a_port_that_cannot_be_bound_is_an_error_at_start() {
    let taken = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = loopback();
    config.ports = Some(port..=port);
    match Sfu::new(config) {
        Err(SfuError::Bind { ports, .. }) => assert_eq!(ports, format!("{port}-{port}")),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("bound a taken port"),
    }
}
