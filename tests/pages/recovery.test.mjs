// When the pages restart ICE (public/lib/recovery.js), on virtual time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DISCONNECTED_GRACE_MS, MAX_RESTARTS, RESTART_TIMEOUT_MS, SILENCE_MS, initialRecovery, recover } from '../../public/lib/recovery.js';

/** Feeds inputs in order, acting on 'restart' as the page does; returns the actions with their times. */
function play(inputs) {
  let state = initialRecovery;
  const actions = [];
  for (const input of inputs) {
    const out = recover(state, input);
    state = out.state;
    if (out.action) {
      actions.push([input.now, out.action]);
      if (out.action === 'restart') state = recover(state, { type: 'restarted', now: input.now }).state;
    }
  }
  return { state, actions };
}

const ice = (state, now) => ({ type: 'ice', state, now });
/** Transport readings every 500 ms from `from` to `to`; `receiving(t)`/`sending(t)` say whether bytes grew. */
function traffic(from, to, { receiving = () => true, sending = () => true } = {}) {
  const out = [];
  let received = 1000 + from;
  let sent = 1000 + from;
  for (let t = from; t <= to; t += 500) {
    if (receiving(t)) received += 100;
    if (sending(t)) sent += 100;
    out.push({ type: 'traffic', received, sent, now: t });
  }
  return out;
}
const connectedCall = [ice('checking', 0), ice('connected', 500), ...traffic(500, 5000)];

test('a healthy call restarts nothing', () => {
  assert.deepEqual(play([...connectedCall, ...traffic(5500, 60_000)]).actions, []);
});

test('bytes stop arriving while ours leave: restart after the silence', () => {
  const cut = 10_000;
  const { actions } = play([...connectedCall, ...traffic(5500, 20_000, { receiving: (t) => t < cut })]);
  assert.equal(actions[0][1], 'restart');
  const at = actions[0][0];
  assert.ok(at - cut >= SILENCE_MS - 500 && at - cut <= SILENCE_MS + 500, `restarted ${at - cut} ms after the cut`);
});

test('silence while we send nothing is not a broken path (nobody talks)', () => {
  const { actions } = play([...connectedCall, ...traffic(5500, 60_000, { receiving: (t) => t < 8000, sending: (t) => t < 8000 })]);
  assert.deepEqual(actions, []);
});

test('a blip shorter than the grace restarts nothing', () => {
  const { actions } = play([...connectedCall, ice('disconnected', 6000), ...traffic(6000, 6000 + DISCONNECTED_GRACE_MS - 500), ice('connected', 6000 + DISCONNECTED_GRACE_MS - 100), ...traffic(7500, 20_000)]);
  assert.deepEqual(actions, []);
});

test('back to checking past the grace restarts once, then waits for the restart', () => {
  const { actions } = play([...connectedCall, ice('checking', 6000), ...traffic(6000, 6000 + RESTART_TIMEOUT_MS - 500)]);
  assert.deepEqual(actions, [[6000 + DISCONNECTED_GRACE_MS, 'restart']]);
});

test('failed restarts at once', () => {
  const { actions } = play([...connectedCall, ice('failed', 6000)]);
  assert.deepEqual(actions, [[6000, 'restart']]);
});

test('a restart that brings nothing back is retried, spaced, then given up once', () => {
  const cut = 6000;
  const { actions, state } = play([...connectedCall, ...traffic(5500, cut + (MAX_RESTARTS + 2) * RESTART_TIMEOUT_MS, { receiving: (t) => t < cut })]);
  const restarts = actions.filter(([, a]) => a === 'restart');
  assert.equal(restarts.length, MAX_RESTARTS);
  for (let i = 1; i < restarts.length; i++) assert.ok(restarts[i][0] - restarts[i - 1][0] >= RESTART_TIMEOUT_MS, 'spaced by the timeout');
  assert.equal(actions.at(-1)[1], 'give-up');
  assert.equal(actions.filter(([, a]) => a === 'give-up').length, 1);
  assert.equal(state.gaveUp, true);
});

test('traffic coming back after a restart resets the count', () => {
  const cut = 6000;
  const back = 9000;
  const { state, actions } = play([...connectedCall, ...traffic(5500, 30_000, { receiving: (t) => t < cut || t >= back })]);
  assert.equal(actions.length, 1);
  assert.equal(state.restarts, 0);
  assert.equal(state.restartedAt, null);
});

test('a closed connection is left alone', () => {
  const { actions } = play([...connectedCall, ice('closed', 6000), ...traffic(6000, 30_000, { receiving: () => false })]);
  assert.deepEqual(actions, []);
});

test('a first attempt that never connected is not restarted', () => {
  // What Chromium did in the lab between symmetric NATs without a relay: checking for ~15 s,
  // then its ICE state `disconnected` and its connection `failed`.
  const { actions } = play([ice('checking', 0), ...traffic(0, 15_000, { receiving: () => false }), ice('disconnected', 15_000), ice('failed', 15_500), ...traffic(15_500, 40_000, { receiving: () => false })]);
  assert.deepEqual(actions, []);
});

test('answering the other side\'s restart holds ours back for the timeout', () => {
  const cut = 6000;
  const inputs = [...connectedCall, ...traffic(5500, cut + 900, { receiving: (t) => t < cut }), { type: 'remote-restart', now: cut + 1000 },
    ...traffic(cut + 1000, cut + 1000 + RESTART_TIMEOUT_MS + 500, { receiving: (t) => t < cut })];
  const { actions } = play(inputs);
  assert.deepEqual(actions.map(([, a]) => a), ['restart'], 'one restart, after the timeout only');
  assert.ok(actions[0][0] >= cut + 1000 + RESTART_TIMEOUT_MS, `not before the answered restart timed out (${actions[0][0]})`);
});
