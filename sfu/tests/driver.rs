//! The driver end to end, on a real loopback socket and the real clock: a str0m client
//! joins through the façade, its media connects, it leaves, and nothing is left. (What
//! the core does over time is tested on virtual time in `tests/core`.)

use std::{
    net::{SocketAddr, UdpSocket as StdUdpSocket},
    time::{Duration, Instant},
};

use sfu::{NetConfig, ParticipantEvent, Sfu, SfuConfig, SfuError};
use str0m::{
    change::{SdpAnswer, SdpOffer},
    media::{Direction, MediaKind},
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_through_the_driver_and_leaves_nothing_behind() {
    let sfu = Sfu::new(loopback()).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local: SocketAddr = socket.local_addr().unwrap();
    let mut client = Rtc::new(Instant::now());
    client.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply().unwrap();

    let request = sfu.join("r", "Ada", offer.to_sdp_string());
    let id = request.id;
    let mut joined = request.joined().await.unwrap();
    assert_eq!(joined.id, id, "the id is known before the answer");
    assert!(joined.answer.contains("typ host"));
    assert_eq!(sfu.counts(), (1, 1));
    let answer = SdpAnswer::from_sdp_string(&joined.answer).unwrap();
    client.sdp_api().accept_answer(pending, answer).unwrap();
    sfu.ready(id);

    let connect_by = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    'connect: loop {
        let wake = loop {
            match client.poll_output().unwrap() {
                Output::Transmit(t) => {
                    socket.send_to(&t.contents, t.destination).await.unwrap();
                }
                Output::Timeout(at) => break at,
                Output::Event(Event::Connected) => break 'connect,
                Output::Event(_) => {}
            }
        };
        assert!(Instant::now() < connect_by, "no connection within 10 s");
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, source) = received.unwrap();
                let receive = Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap();
                client.handle_input(Input::Receive(Instant::now(), receive)).unwrap();
            }
            _ = tokio::time::sleep_until(wake.min(connect_by).into()) => {
                client.handle_input(Input::Timeout(Instant::now())).unwrap();
            }
            event = joined.events.recv() => match event.expect("events channel open") {
                ParticipantEvent::Update { round, sdp } => {
                    let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                    let ours = client.sdp_api().accept_offer(offer).unwrap();
                    sfu.answer(id, round, Ok(ours.to_sdp_string()));
                }
                ParticipantEvent::Participants(_)
                | ParticipantEvent::Speakers(_)
                | ParticipantEvent::PublishLayers(_)
                | ParticipantEvent::VideoPaused { .. } => {}
                ParticipantEvent::Failed => panic!("failed while connecting"),
            },
        }
    }
    let report = sfu.report().await;
    assert_eq!(report.rooms[0].participants[0].id, id);
    assert_eq!(report.media_address, sfu.media_addr().to_string());

    sfu.leave(id).await;
    sfu.leave(id).await; // idempotent
    assert_eq!(sfu.counts(), (0, 0));
    // A report within 100 ms of the last is reused; this one is fresh.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let report = sfu.report().await;
    assert_eq!((report.joins, report.leaves, report.tasks), (1, 1, 0));
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
