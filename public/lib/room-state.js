// The room page's mirror of the server's `/sfu` states (signal/src/sfu_signaling/state.rs:
// idle → joining → joined), as one pure reducer, plus what the page adds: `rejoining` while
// the user still wants to be in the room but the server's side of the media session is gone
// (the server restarted, dropped our media, or an ICE restart did not help), and `failed`
// when that keeps happening.

export const PHASE = Object.freeze({
  LOBBY: 'lobby',
  JOINING: 'joining',
  JOINED: 'joined',
  REJOINING: 'rejoining',
  FAILED: 'failed',
});

/** At most this many automatic rejoins within REJOIN_WINDOW_MS; then the page gives up. */
export const MAX_REJOINS = 4;
export const REJOIN_WINDOW_MS = 60_000;

export const initialRoom = Object.freeze({ phase: PHASE.LOBBY, room: null, name: null, id: null, rejoins: [], error: null });

/**
 * @param {typeof initialRoom} s
 * @param {{type: string, room?: string, name?: string, id?: string, code?: string,
 *   message?: string, now?: number}} ev  the user's `join` and `leave`; the server's answer
 *   to a join (`joined`, `refused`); `lost` (the media session is gone); `rejoin` (the page
 *   is about to join again).
 * @returns {typeof initialRoom} the next state (the same object when nothing changes)
 */
export function reduce(s, ev) {
  switch (ev.type) {
    case 'join':
      return s.phase === PHASE.LOBBY ? { ...initialRoom, phase: PHASE.JOINING, room: ev.room, name: ev.name } : s;
    case 'joined':
      return s.phase === PHASE.JOINING || s.phase === PHASE.REJOINING ? { ...s, phase: PHASE.JOINED, id: ev.id, error: null } : s;
    case 'refused':
      // A first join that fails goes back to the lobby with the reason. A rejoin keeps trying
      // (the server may still be starting), unless the room filled up meanwhile.
      if (s.phase === PHASE.JOINING || (s.phase === PHASE.REJOINING && ev.code === 'full')) {
        return { ...initialRoom, error: ev.message ?? ev.code ?? 'could not join' };
      }
      return s;
    case 'lost':
      return s.phase === PHASE.JOINED ? { ...s, phase: PHASE.REJOINING, id: null } : s;
    case 'rejoin': {
      if (s.phase !== PHASE.JOINED && s.phase !== PHASE.REJOINING) return s;
      const rejoins = s.rejoins.filter((t) => ev.now - t < REJOIN_WINDOW_MS);
      if (rejoins.length >= MAX_REJOINS) {
        return { ...s, phase: PHASE.FAILED, id: null, rejoins, error: 'The connection to the room keeps failing. Leave and join again later.' };
      }
      return { ...s, phase: PHASE.REJOINING, id: null, rejoins: [...rejoins, ev.now] };
    }
    case 'leave':
      return s.phase === PHASE.LOBBY ? s : { ...initialRoom };
    default:
      return s;
  }
}

/** The user wants to be in the room (the call view is shown, media is or will be set up). */
export const inRoom = (s) => s.phase === PHASE.JOINING || s.phase === PHASE.JOINED || s.phase === PHASE.REJOINING;
