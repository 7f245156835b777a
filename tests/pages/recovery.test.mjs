// When the pages restart ICE (public/lib/recovery.js), on virtual time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DISCONNECTED_GRACE_MS, MAX_RESTARTS, RESTART_TIMEOUT_MS, initialRecovery, recover } from '../../public/lib/recovery.js';

/** Feeds inputs in order; returns the actions with their times. */
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
const ticks = (from, to, every = 500) => Array.from({ length: Math.floor((to - from) / every) + 1 }, (_, i) => ({ type: 'tick', now: from + i * every }));

test('a blip shorter than the grace restarts nothing', () => {
  const { actions } = play([ice('connected', 0), ice('disconnected', 1000), ...ticks(1000, 1000 + DISCONNECTED_GRACE_MS - 100), ice('connected', 1000 + DISCONNECTED_GRACE_MS - 50)]);
  assert.deepEqual(actions, []);
});

test('disconnected past the grace restarts once, then waits for the restart', () => {
  const { actions } = play([ice('connected', 0), ice('disconnected', 1000), ...ticks(1000, 1000 + RESTART_TIMEOUT_MS)]);
  assert.deepEqual(actions, [[1000 + DISCONNECTED_GRACE_MS, 'restart']]);
});

test('failed restarts at once', () => {
  const { actions } = play([ice('connected', 0), ice('failed', 5000)]);
  assert.deepEqual(actions, [[5000, 'restart']]);
});

test('a restart that does not connect is retried, then given up', () => {
  const start = 1000;
  const { actions, state } = play([ice('connected', 0), ice('failed', start), ice('checking', start + 10), ...ticks(start, start + (MAX_RESTARTS + 1) * RESTART_TIMEOUT_MS + 1000)]);
  const restarts = actions.filter(([, a]) => a === 'restart');
  assert.equal(restarts.length, MAX_RESTARTS);
  for (let i = 1; i < restarts.length; i++) assert.ok(restarts[i][0] - restarts[i - 1][0] >= RESTART_TIMEOUT_MS, 'spaced by the timeout');
  assert.deepEqual(actions.at(-1)[1], 'give-up');
  assert.equal(actions.filter(([, a]) => a === 'give-up').length, 1, 'given up once');
  assert.equal(state.gaveUp, true);
});

test('connecting again resets the count', () => {
  const { state, actions } = play([ice('connected', 0), ice('failed', 100), ice('checking', 200), ice('connected', 900)]);
  assert.deepEqual(actions, [[100, 'restart']]);
  assert.equal(state.restarts, 0);
  assert.equal(state.restartedAt, null);
});

test('a closed connection is left alone', () => {
  const { actions } = play([ice('connected', 0), ice('closed', 100), ...ticks(100, 30_000)]);
  assert.deepEqual(actions, []);
});

test('the initial connection attempt is not the policy\'s business', () => {
  // `checking` for a long time before ever connecting: ICE's own timeouts decide (failed).
  const { actions } = play([ice('checking', 0), ...ticks(0, 20_000)]);
  assert.deepEqual(actions, []);
});
