//! A room's broadcasts as they reach the members' sockets: written at once when nobody is
//! writing; made during a pass, carried by the next pass (the room writer's) several frames
//! per write.

use super::*;
use crate::protocol::outbox::testing::{Recorder, sender_to};
use std::os::unix::net::UnixStream;

fn members(room: &Room, count: u64) -> Vec<(Arc<Recorder>, Sender, UnixStream)> {
    (1..=count)
        .map(|id| {
            let recorder = Arc::new(Recorder::default());
            let (sender, peer) = sender_to(id, &recorder, 1 << 16);
            assert!(room.join(&sender));
            (recorder, sender, peer)
        })
        .collect()
}

fn frames(texts: &[&str]) -> Vec<u8> {
    let encoded = texts
        .iter()
        .map(|text| Encoded::encode(&Message::text(*text)));
    encoded.flat_map(|frame| frame.bytes().to_vec()).collect()
}

#[test]
fn with_nobody_writing_a_broadcast_reaches_every_member_before_it_returns() {
    let room = Room::new();
    let members = members(&room, 3);
    let delivery = room.broadcast("now");
    assert_eq!(
        delivery,
        Delivery {
            sent: 3,
            dropped: 0
        }
    );
    for (recorder, _, _) in &members {
        let writes = recorder.writes.lock().unwrap();
        assert_eq!(*writes, vec![(1, frames(&["now"]))]);
    }
}

#[test]
fn broadcasts_made_during_a_pass_return_at_once_and_leave_together_with_the_next_pass() {
    let room = Room::new();
    let members = members(&room, 3);
    // A pass in progress (another thread's broadcast, still writing).
    let in_progress = room.members.passes.take_turn().expect("nobody is writing");
    // These only queue: the next pass carries them.
    for text in ["one", "two", "three"] {
        assert_eq!(room.broadcast(text).sent, 3);
    }
    for (recorder, _, _) in &members {
        assert!(
            recorder.writes.lock().unwrap().is_empty(),
            "nothing written yet"
        );
    }
    // The pass in progress ends; the room's writer makes the one owed.
    assert_eq!(in_progress.end(), pass::After::StartWriter);
    room.members.start_writer();
    room.members.passes.wait_until_written();
    for (recorder, _, _) in &members {
        let writes = recorder.writes.lock().unwrap();
        assert_eq!(
            *writes,
            vec![(3, frames(&["one", "two", "three"]))],
            "one write of the three frames, in order"
        );
    }
}
