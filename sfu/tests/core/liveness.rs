//! Vanished peers, failed renegotiations, ICE restarts and NAT rebinding, on virtual time.

use sfu::{
    core::{Command, Reply},
    SfuError,
};

use crate::lab::{ice_ufrag, ms, secs, Lab, Updates};

fn two_in_a_call() -> (Lab, usize, usize) {
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    let bob = lab.client("Bob", true);
    lab.join(ada, "r").unwrap();
    lab.join(bob, "r").unwrap();
    let t0 = lab.now;
    lab.run_until("media flows", secs(5), |lab| {
        lab.video_frames_since(ada, t0) > 5 && lab.video_frames_since(bob, t0) > 5
    });
    (lab, ada, bob)
}

fn failed_after(lab: &Lab, c: usize, since: std::time::Instant) -> std::time::Duration {
    lab.clients[c].failed_at.expect("failed") - since
}

/// A browser that vanishes (tab killed, laptop closed) while its signaling is gone too:
/// after the silence limit the core offers an ICE restart, nobody can answer it, and the
/// participant is failed — 8 s of virtual time, milliseconds of test.
#[test]
fn a_vanished_peer_is_failed_after_the_silence_limit() {
    let (mut lab, ada, bob) = two_in_a_call();
    lab.clients[bob].alive = false;
    lab.clients[bob].updates = Updates::Refuse;
    let gone = lab.now;
    lab.run_until("Bob failed", secs(30), |lab| {
        lab.clients[bob].failed_at.is_some()
    });
    let after = failed_after(&lab, bob, gone);
    assert!(
        after >= secs(8) && after < secs(9),
        "failed {after:?} after vanishing"
    );
    assert_eq!(lab.clients[ada].participants.len(), 1, "Ada sees Bob go");
    assert_eq!(lab.core.counts(), (1, 1));
}

/// A frozen page (signaling up, nothing answered): the restart offer goes unanswered and
/// the update timeout fails it.
#[test]
fn a_frozen_page_is_failed_after_the_update_timeout() {
    let (mut lab, _ada, bob) = two_in_a_call();
    lab.clients[bob].alive = false;
    lab.clients[bob].updates = Updates::Ignore;
    let gone = lab.now;
    lab.run_until("Bob failed", secs(30), |lab| {
        lab.clients[bob].failed_at.is_some()
    });
    let after = failed_after(&lab, bob, gone);
    // 8 s of silence, then 10 s for the restart offer's answer.
    assert!(
        after >= secs(18) && after < secs(19),
        "failed {after:?} after freezing"
    );
}

/// An `update` answered with an error fails the participant at once; one never answered,
/// after the update timeout; a late answer changes nothing.
#[test]
fn a_failed_update_drops_the_participant() {
    let (mut lab, ada, bob) = two_in_a_call();
    lab.clients[bob].updates = Updates::Refuse;
    let cy = lab.client("Cy", true);
    lab.join(cy, "r").unwrap();
    let t0 = lab.now;
    lab.run_until("Bob failed", secs(5), |lab| {
        lab.clients[bob].failed_at.is_some()
    });
    assert!(failed_after(&lab, bob, t0) < secs(1));
    assert!(lab.clients[ada].failed_at.is_none() && lab.clients[cy].failed_at.is_none());

    lab.clients[ada].updates = Updates::Ignore;
    let dee = lab.client("Dee", true);
    lab.join(dee, "r").unwrap();
    let t1 = lab.now;
    lab.run_until("Ada failed", secs(15), |lab| {
        lab.clients[ada].failed_at.is_some()
    });
    let after = failed_after(&lab, ada, t1);
    assert!(
        after >= secs(10) && after < secs(11),
        "failed {after:?} after the offer"
    );
    // Cy and Dee go on.
    let t2 = lab.now;
    lab.run_for(secs(1));
    assert!(lab.video_frames_since(cy, t2) > 10 && lab.video_frames_since(dee, t2) > 10);
}

/// A media connection that never comes up gives its seat back after the connect timeout.
#[test]
fn a_connection_that_never_comes_up_gives_its_seat_back() {
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    lab.join(ada, "r").unwrap();
    lab.clients[ada].cut = true;
    let t0 = lab.now;
    lab.run_until("Ada failed", secs(30), |lab| {
        lab.clients[ada].failed_at.is_some()
    });
    let after = failed_after(&lab, ada, t0);
    assert!(after >= secs(20) && after < secs(21), "{after:?}");
    assert_eq!(lab.core.counts(), (0, 0));
}

/// The page asks for an ICE restart (`restart`): the next `update` carries new ICE
/// credentials, the browser answers, ICE reconnects and media flows on; nobody fails.
#[test]
fn a_restart_asked_by_the_page_renews_ice_and_media_goes_on() {
    let (mut lab, ada, bob) = two_in_a_call();
    let joined_ufrag = ice_ufrag(&lab.clients[ada].answer).unwrap().to_owned();
    let offers = lab.clients[ada].offers.len();
    let id = lab.id(ada);
    assert!(matches!(
        lab.command(Command::Restart { id }),
        Ok(Reply::Done)
    ));
    // A second request while one is under way is folded into it.
    lab.command(Command::Restart { id }).unwrap();
    lab.run_for(ms(200));
    assert_eq!(
        lab.clients[ada].offers.len(),
        offers + 1,
        "one restart offer"
    );
    let offer = lab.clients[ada].offers.last().unwrap();
    let ufrag = ice_ufrag(offer).unwrap();
    assert_ne!(ufrag, joined_ufrag, "new ICE credentials");
    let t0 = lab.now;
    lab.run_until("media after the restart", secs(5), |lab| {
        lab.video_frames_since(ada, t0) > 10 && lab.video_frames_since(bob, t0) > 10
    });
    lab.run_for(secs(15));
    assert!(lab.clients[ada].failed_at.is_none() && lab.clients[bob].failed_at.is_none());
    let Reply::Report(report) = lab.command(Command::Report).unwrap() else {
        panic!()
    };
    assert_eq!(report.ice_restarts, 1);
    assert!(matches!(
        lab.command(Command::Restart {
            id: "p0123456789ab".parse().unwrap()
        }),
        Err(SfuError::NotJoined)
    ));
}

/// The network drops everything for 12 s (a Wi-Fi handover): the silence triggers an ICE
/// restart whose offer the page answers over its signaling, and once the network is back
/// media flows again — where the old SFU dropped the participant after 8 s.
#[test]
fn a_lost_path_is_repaired_by_an_ice_restart() {
    let (mut lab, ada, bob) = two_in_a_call();
    let offers = lab.clients[ada].offers.len();
    lab.clients[ada].cut = true;
    lab.run_for(secs(12));
    assert_eq!(
        lab.clients[ada].offers.len(),
        offers + 1,
        "a restart offer after 8 s"
    );
    assert!(ice_ufrag(lab.clients[ada].offers.last().unwrap()).is_some());
    lab.clients[ada].cut = false;
    let t0 = lab.now;
    lab.run_until("media back", secs(8), |lab| {
        lab.video_frames_since(ada, t0) > 10 && lab.video_frames_since(bob, t0) > 10
    });
    lab.run_for(secs(20));
    assert!(
        lab.clients[ada].failed_at.is_none(),
        "repaired, not dropped"
    );
}

/// If the path does not come back, the participant is failed `restart_timeout` after it
/// answered the restart offer.
#[test]
fn a_path_that_stays_lost_fails_after_the_restart_timeout() {
    let (mut lab, ada, _bob) = two_in_a_call();
    lab.clients[ada].cut = true;
    let t0 = lab.now;
    lab.run_until("Ada failed", secs(40), |lab| {
        lab.clients[ada].failed_at.is_some()
    });
    let after = failed_after(&lab, ada, t0);
    // 8 s of silence, the answer 30 ms later, then 10 s.
    assert!(after >= secs(18) && after < secs(19), "{after:?}");
}

/// NAT rebinding: the client's public address changes mid-call (its NAT dropped the
/// mapping). Its next checks come from the new address with valid credentials, the core
/// follows it, and media goes on both ways.
#[test]
fn a_participant_whose_address_changes_keeps_working() {
    let (mut lab, ada, bob) = two_in_a_call();
    lab.clients[ada].public = "203.0.113.99:7777".parse().unwrap();
    let t0 = lab.now;
    let took = lab.run_until("media both ways after the rebinding", secs(20), |lab| {
        lab.video_frames_since(ada, t0) > 10 && lab.video_frames_since(bob, t0) > 10
    });
    eprintln!("NAT rebinding: media both ways again after {took:?}");
    lab.run_for(secs(20));
    assert!(lab.clients[ada].failed_at.is_none());
    let t1 = lab.now;
    lab.run_for(secs(1));
    assert!(lab.video_frames_since(ada, t1) > 10 && lab.video_frames_since(bob, t1) > 10);
}

/// Media moving to another path (here a new public address; in a browser, an ICE restart
/// onto the relay) loses what was in flight both ways: the core asks at once for keyframes
/// of what the participant receives and of what it publishes, instead of leaving every
/// decoder to wait for its browser's own keyframe request.
#[test]
fn a_new_path_asks_for_keyframes_both_ways() {
    let (mut lab, ada, bob) = two_in_a_call();
    lab.run_for(secs(3));
    let t0 = lab.now;
    lab.clients[ada].public = "203.0.113.99:7777".parse().unwrap();
    lab.run_until("media both ways after the move", secs(20), |lab| {
        lab.video_frames_since(ada, t0) > 10 && lab.video_frames_since(bob, t0) > 10
    });
    for (c, what) in [(bob, "what Ada receives"), (ada, "what Ada publishes")] {
        assert!(
            lab.clients[c].keyframe_requests.iter().any(|at| *at >= t0),
            "a keyframe of {what} was asked for"
        );
    }
}
