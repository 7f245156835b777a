//! Screen sharing: the server offers an m-line to receive a participant's screen on, the
//! room gets it as a second video of that participant, and it goes when sharing stops.

use std::time::Instant;

use sfu::{
    core::{Command, Reply},
    BandwidthEstimation, ParticipantId, ParticipantReport, Source,
};

use crate::lab::{secs, Lab};

/// The m-line of `sdp` that carries `stream` (its `a=msid`), if any is open.
fn mid_of_stream(sdp: &str, stream: &str) -> Option<String> {
    sdp.split("\r\nm=").skip(1).find_map(|section| {
        let open = !section.starts_with("video 0 ") && !section.starts_with("audio 0 ");
        let carries = section
            .lines()
            .any(|l| l.starts_with(&format!("a=msid:{stream} ")));
        let mid = section.lines().find_map(|l| l.strip_prefix("a=mid:"))?;
        (open && carries).then(|| mid.trim().to_owned())
    })
}

fn screen_frames_since(lab: &Lab, c: usize, mid: &str, since: Instant) -> usize {
    lab.clients[c]
        .frames
        .iter()
        .filter(|f| f.video && f.at > since && f.mid.to_string() == mid)
        .count()
}

fn screen_of(lab: &Lab, c: usize, publisher: ParticipantId) -> Option<String> {
    lab.clients[c]
        .participants
        .iter()
        .find(|p| p.id == publisher)
        .and_then(|p| p.screen.clone())
}

/// `name`'s line of the room's report (`GET /api/rooms`).
fn participant_report(lab: &mut Lab, name: &str) -> ParticipantReport {
    let Reply::Report(report) = lab.command(Command::Report).unwrap() else {
        panic!()
    };
    report.rooms[0]
        .participants
        .iter()
        .find(|p| p.name == name)
        .unwrap()
        .clone()
}

fn share(lab: &mut Lab, id: ParticipantId, on: bool) {
    lab.command(Command::Share { id, on }).unwrap();
}

/// Runs until client `c`'s last offer carries `stream`; its m-line.
fn offered_mid(lab: &mut Lab, c: usize, stream: &str) -> String {
    lab.run_until("the offer carries the screen", secs(3), |lab| {
        lab.clients[c]
            .offers
            .last()
            .is_some_and(|o| mid_of_stream(o, stream).is_some())
    });
    mid_of_stream(lab.clients[c].offers.last().unwrap(), stream).unwrap()
}

/// Ada shares her screen: Bob gets it on an m-line of its own, under a stream id apart from
/// her camera's, starting on a keyframe, while her camera goes on; when she stops, the
/// screen goes from the room and both connections, and she can share again.
#[test]
fn a_shared_screen_reaches_the_room_and_goes_when_stopped() {
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    let bob = lab.client("Bob", true);
    let ada_id = lab.join(ada, "r").unwrap();
    lab.join(bob, "r").unwrap();
    let t0 = lab.now;
    lab.run_until("both receive video", secs(5), |lab| {
        lab.video_frames_since(bob, t0) > 10 && lab.video_frames_since(ada, t0) > 10
    });
    let offers_before = lab.clients[ada].offers.len();

    for round in 0..2 {
        share(&mut lab, ada_id, true);
        let stream = format!("{ada_id}-screen");
        lab.run_until("Bob is told Ada shares", secs(3), |lab| {
            screen_of(lab, bob, ada_id).as_deref() == Some(stream.as_str())
        });
        let ada_offer = lab.clients[ada].offers.last().unwrap().clone();
        assert!(
            lab.clients[ada].offers.len() > offers_before,
            "Ada was offered a line to send on"
        );
        assert!(ada_offer.contains("a=recvonly"), "{ada_offer}");
        let participants = &lab.clients[bob].participants;
        let info = participants.iter().find(|p| p.id == ada_id).unwrap();
        assert!(info.video, "her camera is still listed");
        assert!(info.streams.contains(&stream), "{:?}", info.streams);
        let t1 = lab.now;
        let mid = offered_mid(&mut lab, bob, &stream);
        lab.run_until("Bob receives the screen", secs(3), |lab| {
            screen_frames_since(lab, bob, &mid, t1) > 10
        });
        let first = lab.clients[bob]
            .frames
            .iter()
            .find(|f| f.at > t1 && f.mid.to_string() == mid)
            .unwrap();
        assert!(first.keyframe, "the screen starts on a keyframe");
        let camera_frames =
            lab.video_frames_since(bob, t1) - screen_frames_since(&lab, bob, &mid, t1);
        assert!(
            camera_frames > 10,
            "her camera goes on: {camera_frames} frames"
        );
        assert_eq!(
            participant_report(&mut lab, "Ada").publishing.len(),
            3,
            "round {round}"
        );
        assert_eq!(
            participant_report(&mut lab, "Bob").subscriptions,
            3,
            "round {round}"
        );

        share(&mut lab, ada_id, false);
        assert_eq!(
            screen_of(&lab, bob, ada_id),
            None,
            "the room is told at once"
        );
        lab.run_until("both m-lines stopped", secs(3), |lab| {
            mid_of_stream(lab.clients[bob].offers.last().unwrap(), &stream).is_none()
                && lab.clients[ada]
                    .offers
                    .last()
                    .unwrap()
                    .matches("m=video 0 ")
                    .count()
                    > round
        });
        lab.run_for(secs(1));
        let t2 = lab.now;
        lab.run_for(secs(1));
        assert_eq!(screen_frames_since(&lab, bob, &mid, t2), 0);
        assert!(lab.video_frames_since(bob, t2) > 10, "her camera goes on");
        assert_eq!(participant_report(&mut lab, "Ada").publishing.len(), 2);
    }
}

/// Stopping before the offer is even answered, and asking twice, end in one consistent
/// session: no screen, and the room never hears of one.
#[test]
fn a_share_cancelled_mid_round_leaves_nothing() {
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    let bob = lab.client("Bob", true);
    let ada_id = lab.join(ada, "r").unwrap();
    lab.join(bob, "r").unwrap();
    lab.run_for(secs(2));
    let offers = lab.clients[ada].offers.len();
    share(&mut lab, ada_id, true);
    share(&mut lab, ada_id, true);
    lab.run_until("Ada is offered the line", secs(2), |lab| {
        lab.clients[ada].offers.len() > offers
    });
    share(&mut lab, ada_id, false);
    lab.run_for(secs(3));
    let ada_offers = &lab.clients[ada].offers;
    assert_eq!(
        ada_offers.len(),
        offers + 2,
        "opened, then stopped once answered"
    );
    assert!(ada_offers.last().unwrap().contains("m=video 0 "));
    assert_eq!(screen_of(&lab, bob, ada_id), None);
    assert_eq!(participant_report(&mut lab, "Ada").publishing.len(), 2);
}

/// With a downlink that carries one video but not two, the allocator keeps the shared screen
/// (it is shown large and what the room looks at) and pauses the sharer's camera; the
/// subscriber is told which of the two videos paused.
#[test]
fn a_slow_downlink_keeps_the_screen_and_pauses_the_camera() {
    let mut lab = Lab::with_config(|c| {
        c.bandwidth_estimation = BandwidthEstimation::SendSide {
            start_bps: 1_000_000,
        }
    });
    let ada = lab.client("Ada", true);
    let bob = lab.client("Bob", false);
    let ada_id = lab.join(ada, "r").unwrap();
    lab.join(bob, "r").unwrap();
    lab.run_for(secs(2));
    share(&mut lab, ada_id, true);
    let stream = format!("{ada_id}-screen");
    let mid = offered_mid(&mut lab, bob, &stream);
    lab.run_for(secs(6));
    assert!(lab.clients[bob].video_paused.is_empty());

    // Each video is ~120 kbit/s of payload, the audio ~24: with headers, one video and the
    // audio fit in 280 kbit/s, two videos do not.
    lab.clients[bob].downlink_bps = Some(280_000);
    lab.run_until("Ada's camera paused for Bob", secs(15), |lab| {
        lab.clients[bob]
            .video_paused
            .iter()
            .any(|e| e.1 == ada_id && e.2 && e.3 == Source::Camera)
    });
    lab.run_for(secs(3));
    let t = lab.now;
    lab.run_for(secs(3));
    let screen = screen_frames_since(&lab, bob, &mid, t);
    let camera = lab.video_frames_since(bob, t) - screen;
    assert!(screen > 50, "the screen goes on: {screen} frames in 3 s");
    assert_eq!(camera, 0, "the camera is paused");
    assert!(
        !lab.clients[bob]
            .video_paused
            .iter()
            .any(|e| e.3 == Source::Screen && e.2),
        "the screen was never paused"
    );
}
