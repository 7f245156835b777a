// The server's recording of an SFU room, as the page shows it: a "REC" chip everyone in the
// room sees while it is on, and the button that starts or stops it. The state comes from
// the join answer and the `recording` event ({on, by, since, reason}); pure functions here,
// the page binds them.

const REASONS = {
  stopped: 'stopped',
  room_empty: 'stopped: nobody left to record',
  room_ended: 'stopped: a moderator ended the room',
  storage_failed: 'stopped: the server could not store it',
  fell_behind: 'stopped: the server could not keep up',
  size_limit: 'stopped: it reached the size the server allows',
};

/** What the chip and the button show for recording `state` (null: never heard of). */
export function recordingView(state) {
  const on = Boolean(state?.on);
  const by = typeof state?.by === 'string' ? state.by : '';
  return {
    chipHidden: !on,
    chipTitle: on ? `This room is being recorded by the server${by ? ` (started by ${by})` : ''}` : '',
    pressed: on,
    buttonTitle: on ? 'Stop recording the room' : 'Record the room on the server (everyone is told)',
  };
}

/** A line for the page's notices when the state changes from `before` to `after`, or null. */
export function recordingNotice(before, after) {
  const was = Boolean(before?.on);
  const is = Boolean(after?.on);
  if (is && !was) return `Recording started${after.by ? ` by ${after.by}` : ''}.`;
  if (was && !is) return `Recording ${REASONS[after?.reason] ?? 'stopped'}.`;
  return null;
}

/** A refused `record` request, in words. */
export function recordingError(error) {
  switch (error?.code) {
    case 'record_not_allowed': return 'Your invitation does not allow recording this room.';
    case 'nothing_to_record': return 'Nobody in the room sends audio or video yet.';
    case 'storage_failed': return 'The server cannot store a recording right now.';
    default: return error?.message ?? 'The recording could not be started.';
  }
}
