// Moderation in SFU rooms (docs/protocol.md, `moderate`), as the room page shows it. Pure
// functions; sfu.js binds them.
//
// Who moderates comes with the join answer (`moderation`): `granted` (the link's token
// says so), `none` (it does not), or `host` (a server without tokens: the room's
// longest-present participant, first in the `participants` list, which the server keeps in
// joining order). A muted participant is marked `muted` in that list; a removed one hears
// `removed {by, reason}`.

/** Whether we may moderate now. */
export function canModerate(mode, participants, myId) {
  if (mode === 'granted') return true;
  return mode === 'host' && Array.isArray(participants) && myId != null && participants[0]?.id === myId;
}

/** Whether a moderator has muted participant `id`. */
export function isMuted(participants, id) {
  return Array.isArray(participants) && participants.some((p) => p?.id === id && p.muted === true);
}

/** The line the lobby shows after `removed {by, reason}`. */
export function removalNotice(event) {
  const by = typeof event?.by === 'string' && event.by ? event.by : 'A moderator';
  return event?.reason === 'room_ended' ? `${by} ended the room for everyone.` : `${by} removed you from the room.`;
}

/** The line shown when we are muted (`true`) or may speak again. */
export function muteNotice(muted) {
  return muted ? 'A moderator muted your microphone.' : 'A moderator unmuted you: turn your microphone on to speak.';
}

/** A refused `moderate` request, in words. */
export function moderationError(error) {
  switch (error?.code) {
    case 'not_moderator': return 'Only a moderator can do that.';
    case 'no_such_participant': return 'That participant has already left.';
    default: return `Cannot moderate: ${error?.message ?? 'no answer from the server'}`;
  }
}
