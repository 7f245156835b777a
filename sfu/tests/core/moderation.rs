//! Moderation: who may, and what removing, muting and ending a room do to the media.

use sfu::{
    core::{Command, Reply},
    Moderation, ModeratorRight, SfuError, TrackKind,
};

use crate::lab::{names, secs, Lab};

fn moderate(
    lab: &mut Lab,
    by: usize,
    action: Moderation,
    right: ModeratorRight,
) -> Result<(), SfuError> {
    let by = lab.id(by);
    lab.command(Command::Moderate { by, action, right })
        .map(|reply| assert!(matches!(reply, Reply::Done)))
}

/// Without tokens the room's longest-present member moderates; when it goes, the next one
/// does. A token's grant lets anyone in the room.
#[test]
fn the_host_or_a_grant_may_remove_and_the_removed_is_gone_at_once() {
    let mut lab = Lab::new();
    let [ada, bob, cy, dan] = ["Ada", "Bob", "Cy", "Dan"].map(|n| lab.client(n, true));
    for c in [ada, bob, cy, dan] {
        lab.join(c, "r").unwrap();
    }
    lab.run_for(secs(2));
    let (bob_id, cy_id) = (lab.id(bob), lab.id(cy));
    assert!(matches!(
        moderate(
            &mut lab,
            bob,
            Moderation::Remove(cy_id),
            ModeratorRight::IfHost
        ),
        Err(SfuError::NotModerator)
    ));
    assert_eq!(lab.clients[cy].removed, None, "a refusal does nothing");
    moderate(
        &mut lab,
        ada,
        Moderation::Remove(bob_id),
        ModeratorRight::IfHost,
    )
    .unwrap();
    assert_eq!(lab.clients[bob].removed, Some(("Ada".into(), false)));
    lab.run_for(secs(1));
    assert_eq!(names(&lab.clients[ada].participants), ["Ada", "Cy", "Dan"]);
    assert!(matches!(
        moderate(&mut lab, ada, Moderation::Remove(bob_id), ModeratorRight::IfHost),
        Err(SfuError::NotInRoom(id)) if id == bob_id
    ));
    // A grant needs no seniority.
    moderate(
        &mut lab,
        dan,
        Moderation::Mute(cy_id, true),
        ModeratorRight::Granted,
    )
    .unwrap();
    // The host leaves: the longest-present of the others moderates now.
    lab.leave(ada);
    let dan_id = lab.id(dan);
    moderate(
        &mut lab,
        cy,
        Moderation::Remove(dan_id),
        ModeratorRight::IfHost,
    )
    .unwrap();
    assert_eq!(lab.clients[dan].removed, Some(("Cy".into(), false)));
    lab.run_for(secs(1));
    assert_eq!(names(&lab.clients[cy].participants), ["Cy"]);
}

/// Nobody moderates another room.
#[test]
fn a_moderator_reaches_only_its_own_room() {
    let mut lab = Lab::new();
    let ada = lab.client("Ada", true);
    let eve = lab.client("Eve", true);
    lab.join(ada, "r").unwrap();
    lab.join(eve, "s").unwrap();
    let eve_id = lab.id(eve);
    for action in [Moderation::Remove(eve_id), Moderation::Mute(eve_id, true)] {
        assert!(matches!(
            moderate(&mut lab, ada, action, ModeratorRight::Granted),
            Err(SfuError::NotInRoom(_))
        ));
    }
    moderate(&mut lab, ada, Moderation::EndRoom, ModeratorRight::Granted).unwrap();
    assert_eq!(lab.clients[eve].removed, None);
    assert_eq!(lab.clients[ada].removed, Some(("Ada".into(), true)));
    lab.run_for(secs(1));
    assert_eq!(lab.core.inventory().rooms, 1, "room s is all that is left");
}

/// A muted participant's audio reaches nobody (subscribers, taps) whatever its browser
/// sends; its video still flows; the room's lists say so; unmuting brings it back.
#[test]
fn muting_stops_a_participants_audio_in_the_media_plane() {
    let mut lab = Lab::new();
    // Ada listens only, so every audio frame Cy receives is Bob's.
    let [ada, bob, cy] =
        [("Ada", false), ("Bob", true), ("Cy", true)].map(|(n, p)| lab.client(n, p));
    for c in [ada, bob, cy] {
        lab.join(c, "r").unwrap();
    }
    let bob_id = lab.id(bob);
    let t0 = lab.now;
    lab.run_until("Cy hears Bob", secs(5), |lab| {
        lab.audio_frames_since(cy, t0) > 10
    });
    let tap = lab.command(Command::AttachTap {
        publisher: bob_id,
        kind: TrackKind::Audio,
    });
    assert!(matches!(tap, Ok(Reply::Tap(_))));
    moderate(
        &mut lab,
        ada,
        Moderation::Mute(bob_id, true),
        ModeratorRight::IfHost,
    )
    .unwrap();
    lab.run_for(secs(1));
    assert!(lab.clients[cy]
        .participants
        .iter()
        .any(|p| p.id == bob_id && p.muted));
    let (t1, taps) = (lab.now, lab.taps.len());
    lab.run_for(secs(2));
    assert_eq!(lab.audio_frames_since(cy, t1), 0, "Cy hears nothing of Bob");
    assert_eq!(lab.taps.len(), taps, "nor does the recording");
    assert!(
        lab.video_frames_since(cy, t1) > 10,
        "Bob's video still flows"
    );
    moderate(
        &mut lab,
        ada,
        Moderation::Mute(bob_id, false),
        ModeratorRight::IfHost,
    )
    .unwrap();
    let t2 = lab.now;
    lab.run_until("Cy hears Bob again", secs(2), |lab| {
        lab.audio_frames_since(cy, t2) > 10
    });
    assert!(lab.taps.len() > taps, "and the tap is fed again");
    assert!(lab.clients[cy].participants.iter().all(|p| !p.muted));
}

/// Ending a room takes everyone out, the moderator too, and leaves nothing behind.
#[test]
fn ending_a_room_removes_everyone() {
    let mut lab = Lab::new();
    let clients: Vec<usize> = ["Ada", "Bob", "Cy"]
        .iter()
        .map(|n| lab.client(n, true))
        .collect();
    for &c in &clients {
        lab.join(c, "r").unwrap();
    }
    lab.run_for(secs(2));
    moderate(
        &mut lab,
        clients[1],
        Moderation::EndRoom,
        ModeratorRight::Granted,
    )
    .unwrap();
    for &c in &clients {
        assert_eq!(lab.clients[c].removed, Some(("Bob".into(), true)));
    }
    lab.run_for(secs(1));
    let inventory = lab.core.inventory();
    assert_eq!(
        (
            inventory.rooms,
            inventory.participants,
            inventory.publications
        ),
        (0, 0, 0)
    );
}
