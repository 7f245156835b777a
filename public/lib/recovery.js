// When to restart ICE: a pure policy on time passed in, so that it can be tested without a
// browser (tests/pages/recovery.test.mjs). The page feeds it ICE state changes, ticks and the
// restarts it made; it answers 'restart', 'give-up' or nothing.
//
// Chromium reports `disconnected` after ~2.5-5 s without an answer to its consent checks (a
// NAT that lost its mapping, a new public address, Wi-Fi roaming) and `failed` ~10 s later. A
// short grace avoids restarting on a blip; a restart that does not connect is retried.

export const DISCONNECTED_GRACE_MS = 1500;
export const RESTART_TIMEOUT_MS = 8000;
export const MAX_RESTARTS = 5;

export const initialRecovery = Object.freeze({ ice: 'new', since: 0, restarts: 0, restartedAt: null, gaveUp: false });

const CONNECTED = new Set(['connected', 'completed']);

/**
 * @param {typeof initialRecovery} state
 * @param {{type: 'ice', state: RTCIceConnectionState, now: number} | {type: 'tick', now: number} |
 *         {type: 'restarted', now: number}} input
 * @returns {{state: typeof initialRecovery, action: null | 'restart' | 'give-up'}}
 */
export function recover(state, input) {
  const s = { ...state };
  const { now } = input;
  if (input.type === 'ice' && input.state !== s.ice) {
    s.ice = input.state;
    s.since = now;
    if (CONNECTED.has(s.ice)) Object.assign(s, { restarts: 0, restartedAt: null, gaveUp: false });
  }
  if (input.type === 'restarted') {
    s.restarts += 1;
    s.restartedAt = now;
  }
  if (s.gaveUp || s.ice === 'closed' || CONNECTED.has(s.ice)) return { state: s, action: null };
  const pending = s.restartedAt !== null;
  if (pending && now - s.restartedAt < RESTART_TIMEOUT_MS) return { state: s, action: null };
  const broken =
    s.ice === 'failed' ||
    (s.ice === 'disconnected' && now - s.since >= DISCONNECTED_GRACE_MS) ||
    // A restart that is still checking (or never started) after its timeout.
    (pending && (s.ice === 'checking' || s.ice === 'new' || s.ice === 'disconnected'));
  if (!broken) return { state: s, action: null };
  if (s.restarts >= MAX_RESTARTS) {
    s.gaveUp = true;
    return { state: s, action: 'give-up' };
  }
  return { state: s, action: 'restart' };
}
