// Room names, as the server accepts them (docs/protocol.md, `invalid_room`).
export const ROOM_RE = /^[A-Za-z0-9_.~-]{1,64}$/;
export const isValidRoom = (name) => typeof name === 'string' && ROOM_RE.test(name);
export const ROOM_HINT = 'Room names use letters, digits and - _ . ~ (1–64 characters).';

/** A refused `join`, in words for the lobby (`room`: its name). */
export function joinRefusal(error, room) {
  switch (error?.code) {
    case 'full': return `Room "${room}" is full.`;
    case 'passcode_required': return `Room "${room}" has a passcode: enter it to join.`;
    case 'wrong_passcode': return `Wrong passcode for room "${room}".`;
    case 'passcode_rate_limited': return 'Too many wrong passcodes: wait a minute before trying again.';
    default: return error?.message ?? 'The room could not be joined.';
  }
}
