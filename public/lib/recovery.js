// When to restart ICE: a pure policy on time passed in, so that it can be tested without a
// browser (tests/pages/recovery.test.mjs). The page feeds it ICE state changes, the transport's
// byte counters (twice a second) and the restarts it made; it answers 'restart', 'give-up' or
// nothing.
//
// Chromium notices a dead path late: in the lab (a home router renumbered, UDP blocked
// mid-call) its ICE state stayed `connected` for ~4 s, then went `checking` (not
// `disconnected`) and repaired itself only when its consent checks found a way. A faster
// signal: while we send media the other side always sends something back (transport-cc
// feedback every ~100 ms, receiver reports every second), so bytes that stop arriving while
// ours still leave mean the path is gone. A restart that does not bring traffic back is
// retried, a few times. Only a path that once worked is restarted: a first attempt that never
// connects has already tried every candidate pair (the lab's symmetric NATs without a relay),
// and a restart would only hide that from the user.

/** Nothing received for this long while sending: the path is dead. */
export const SILENCE_MS = 1200;
/** `disconnected`, or back to `checking`, for this long after having been connected. */
export const DISCONNECTED_GRACE_MS = 1500;
export const RESTART_TIMEOUT_MS = 8000;
export const MAX_RESTARTS = 5;

export const initialRecovery = Object.freeze({
  ice: 'new',
  since: 0,
  everConnected: false,
  received: 0,
  sent: 0,
  lastReceivedAt: null, // when `received` last grew
  sending: false, // `sent` grew at the last reading
  restarts: 0,
  restartedAt: null,
  gaveUp: false,
});

const CONNECTED = new Set(['connected', 'completed']);

/**
 * @param {typeof initialRecovery} state
 * @param {{type: 'ice', state: RTCIceConnectionState, now: number} |
 *         {type: 'traffic', received: number, sent: number, now: number} |
 *         {type: 'tick', now: number} | {type: 'restarted', now: number} |
 *         {type: 'remote-restart', now: number}} input  `restarted`: we restarted ICE;
 *         `remote-restart`: we answered the other side's restart (no need for ours too)
 * @returns {{state: typeof initialRecovery, action: null | 'restart' | 'give-up'}}
 */
export function recover(state, input) {
  const s = { ...state };
  const { now } = input;
  if (input.type === 'ice' && input.state !== s.ice) {
    s.ice = input.state;
    s.since = now;
    if (CONNECTED.has(s.ice)) s.everConnected = true;
  }
  if (input.type === 'traffic') {
    s.sending = input.sent > s.sent;
    s.sent = input.sent;
    if (input.received > s.received) {
      s.received = input.received;
      s.lastReceivedAt = now;
      // Traffic is back after a restart, and ICE agrees: the repair worked.
      if (s.restartedAt !== null && now > s.restartedAt && CONNECTED.has(s.ice)) Object.assign(s, { restarts: 0, restartedAt: null, gaveUp: false });
    }
  }
  if (input.type === 'restarted') {
    s.restarts += 1;
    s.restartedAt = now;
  }
  if (input.type === 'remote-restart' && s.everConnected) s.restartedAt = now;
  if (!s.everConnected || s.gaveUp || s.ice === 'closed') return { state: s, action: null };
  if (s.restartedAt !== null && now - s.restartedAt < RESTART_TIMEOUT_MS) return { state: s, action: null };
  const silent = s.sending && s.lastReceivedAt !== null && now - s.lastReceivedAt >= SILENCE_MS;
  const lost = (s.ice === 'disconnected' || s.ice === 'checking') && now - s.since >= DISCONNECTED_GRACE_MS;
  // A restart whose timeout passed without traffic coming back counts as broken too.
  const broken = s.ice === 'failed' || lost || silent || s.restartedAt !== null;
  if (!broken) return { state: s, action: null };
  if (s.restarts >= MAX_RESTARTS) {
    s.gaveUp = true;
    return { state: s, action: 'give-up' };
  }
  return { state: s, action: 'restart' };
}

/** The byte counters of `pc`'s transport (what `recover` reads as traffic). */
export async function transportBytes(pc) {
  let received = 0;
  let sent = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'transport') {
      received += s.bytesReceived ?? 0;
      sent += s.bytesSent ?? 0;
    }
  });
  return { received, sent };
}
