// The 1-to-1 page's state mirror (public/lib/call-state.js) against the server's transition
// table (docs/protocol.md), for every state and every input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STATE, initialCall, reduce, showsCall } from '../../public/lib/call-state.js';

const R = 'room1';
const { LEAVED, JOINED, CONN, UNBIND } = STATE;

// Where a page can be: the server's four states, plus the page's own "join pending" and
// "rejoining after a signaling outage".
const states = {
  idle: initialCall,
  pending: { ...initialCall, pending: R },
  joined: { state: JOINED, room: R, pending: null, rejoining: false, polite: false },
  conn: { state: CONN, room: R, pending: null, rejoining: false, polite: true },
  unbind: { state: UNBIND, room: R, pending: null, rejoining: false, polite: true },
  rejoining: { state: LEAVED, room: R, pending: null, rejoining: true, polite: true },
};

const inputs = {
  join: { type: 'join', room: R },
  joinedAlone: { type: 'joined', room: R, peers: [] },
  joinedWithPeer: { type: 'joined', room: R, peers: ['x'] },
  otherJoined: { type: 'other_joined', room: R },
  bye: { type: 'bye', room: R },
  full: { type: 'full', room: R },
  leaved: { type: 'leaved', room: R },
  joinError: { type: 'signal_error', event: 'join' },
  disconnected: { type: 'disconnected' },
  reset: { type: 'reset' },
};

// Expected [state, room, pending, rejoining, polite] after each input; '=' = unchanged object.
const idle = [LEAVED, null, null, false, false];
const expected = {
  idle: { join: [LEAVED, null, R, false, false], joinedAlone: '=', joinedWithPeer: '=', otherJoined: '=', bye: '=', full: '=', leaved: '=', joinError: '=', disconnected: '=', reset: idle },
  pending: { join: '=', joinedAlone: [JOINED, R, null, false, false], joinedWithPeer: [CONN, R, null, false, true], otherJoined: '=', bye: '=', full: idle, leaved: '=', joinError: idle, disconnected: idle, reset: idle },
  joined: { join: '=', joinedAlone: '=', joinedWithPeer: '=', otherJoined: [CONN, R, null, false, false], bye: '=', full: '=', leaved: idle, joinError: '=', disconnected: [LEAVED, R, null, true, false], reset: idle },
  conn: { join: '=', joinedAlone: '=', joinedWithPeer: '=', otherJoined: [CONN, R, null, false, false], bye: [UNBIND, R, null, false, true], full: '=', leaved: idle, joinError: '=', disconnected: [LEAVED, R, null, true, true], reset: idle },
  unbind: { join: '=', joinedAlone: '=', joinedWithPeer: '=', otherJoined: [CONN, R, null, false, false], bye: '=', full: '=', leaved: idle, joinError: '=', disconnected: [LEAVED, R, null, true, true], reset: idle },
  rejoining: { join: '=', joinedAlone: [JOINED, R, null, false, false], joinedWithPeer: [CONN, R, null, false, true], otherJoined: '=', bye: '=', full: '=', leaved: idle, joinError: '=', disconnected: [LEAVED, R, null, true, true], reset: idle },
};

test('every state × input pair', () => {
  let checked = 0;
  for (const [stateName, state] of Object.entries(states)) {
    for (const [inputName, input] of Object.entries(inputs)) {
      const want = expected[stateName][inputName];
      assert.notEqual(want, undefined, `table entry for ${stateName} × ${inputName}`);
      const got = reduce(state, input);
      const what = `${stateName} × ${inputName}`;
      if (want === '=') {
        assert.equal(got, state, `${what}: unchanged`);
      } else {
        const [s, room, pending, rejoining, polite] = want;
        assert.deepEqual({ ...got }, { state: s, room, pending, rejoining, polite }, what);
      }
      checked++;
    }
  }
  assert.equal(checked, Object.keys(states).length * Object.keys(inputs).length);
});

test('events for another room change nothing', () => {
  for (const state of Object.values(states)) {
    for (const type of ['joined', 'other_joined', 'bye', 'full', 'leaved']) {
      assert.equal(reduce(state, { type, room: 'other', peers: [] }), state, `${type} for another room`);
    }
  }
});

test('the call stays on screen while signaling reconnects', () => {
  assert.equal(showsCall(states.rejoining), true);
  assert.equal(showsCall(states.idle), false);
  assert.equal(showsCall(states.pending), false);
  for (const s of ['joined', 'conn', 'unbind']) assert.equal(showsCall(states[s]), true, s);
});

test('the newcomer is polite, the member present is not', () => {
  const newcomer = reduce(states.pending, inputs.joinedWithPeer);
  const present = reduce(reduce(states.pending, inputs.joinedAlone), inputs.otherJoined);
  assert.equal(newcomer.polite, true);
  assert.equal(present.polite, false);
});
