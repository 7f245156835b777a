// Room names, as the server accepts them (docs/protocol.md, `invalid_room`).
export const ROOM_RE = /^[A-Za-z0-9_.~-]{1,64}$/;
export const isValidRoom = (name) => typeof name === 'string' && ROOM_RE.test(name);
export const ROOM_HINT = 'Room names use letters, digits and - _ . ~ (1–64 characters).';
