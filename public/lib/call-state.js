// The 1-to-1 page's mirror of the server's per-client state machine (docs/protocol.md,
// signal/src/signaling/state.rs), as one pure reducer, plus what the page adds: a pending
// join, and `rejoining` while the signaling connection is down during a call (the server has
// forgotten us; the media may still flow peer to peer).

export const STATE = Object.freeze({
  LEAVED: 'leaved',
  JOINED: 'joined',
  CONN: 'joined_conn',
  UNBIND: 'joined_unbind',
});

export const initialCall = Object.freeze({ state: STATE.LEAVED, room: null, pending: null, rejoining: false, polite: false });

const inRoom = (call) => call.state !== STATE.LEAVED;

/**
 * @param {typeof initialCall} call
 * @param {{type: string, room?: string, peers?: string[], event?: string}} ev  user actions
 *   (`join`, `reset`), server events (`joined`, `other_joined`, `full`, `leaved`, `bye`,
 *   `signal_error`) and the socket's `disconnected`.
 * @returns {typeof initialCall} the next state (the same object when nothing changes)
 */
export function reduce(call, ev) {
  const same = ev.room !== undefined && ev.room === call.room;
  switch (ev.type) {
    case 'join':
      return call.state === STATE.LEAVED && !call.pending && !call.rejoining ? { ...call, pending: ev.room } : call;
    case 'joined': {
      const expected = call.pending === ev.room || (call.rejoining && same);
      if (!expected || inRoom(call)) return call;
      const peers = Array.isArray(ev.peers) ? ev.peers.length : 0;
      // The newcomer answers the call and yields on glare ("polite"); the member already
      // present makes the offer.
      return { state: peers > 0 ? STATE.CONN : STATE.JOINED, room: ev.room, pending: null, rejoining: false, polite: peers > 0 };
    }
    case 'other_joined':
      return same && inRoom(call) ? { ...call, state: STATE.CONN, polite: false } : call;
    case 'bye':
      return same && call.state === STATE.CONN ? { ...call, state: STATE.UNBIND } : call;
    case 'full':
      // While rejoining, `full` is usually our own old connection, which the server has not
      // yet seen die (it notices within its ping timeout): the page tries again, and gives up
      // with a `reset` if the seat stays taken.
      if (call.pending === ev.room) return { ...call, pending: null };
      return call;
    case 'leaved':
      return same ? { ...initialCall } : call;
    case 'signal_error':
      return ev.event === 'join' && call.pending ? { ...call, pending: null } : call;
    case 'disconnected':
      if (inRoom(call) || call.rejoining) return { ...call, state: STATE.LEAVED, pending: null, rejoining: true };
      return call.pending ? { ...call, pending: null } : call;
    case 'reset':
      return { ...initialCall };
    default:
      return call;
  }
}

/** The page shows the call (not the lobby) while in a room or rejoining one. */
export const showsCall = (call) => inRoom(call) || call.rejoining;
