// The room page's state mirror (public/lib/room-state.js), for every phase and every input,
// plus the rejoin budget over time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_REJOINS, PHASE, REJOIN_WINDOW_MS, inRoom, initialRoom, reduce } from '../../public/lib/room-state.js';

const { LOBBY, JOINING, JOINED, REJOINING, FAILED } = PHASE;
const at = { room: 'r', name: 'Ann' };

const states = {
  lobby: initialRoom,
  joining: { ...initialRoom, ...at, phase: JOINING },
  joined: { ...initialRoom, ...at, phase: JOINED, id: 'p1' },
  rejoining: { ...initialRoom, ...at, phase: REJOINING, rejoins: [1000] },
  failed: { ...initialRoom, ...at, phase: FAILED, rejoins: [1, 2, 3, 4], error: 'x' },
};

const inputs = {
  join: { type: 'join', room: 'r2', name: 'Bob' },
  joined: { type: 'joined', id: 'p2' },
  refusedFull: { type: 'refused', code: 'full', message: 'Room "r" is full.' },
  refusedOther: { type: 'refused', code: 'invalid_sdp', message: 'no answer' },
  lost: { type: 'lost' },
  rejoin: { type: 'rejoin', now: 5000 },
  leave: { type: 'leave' },
  unknown: { type: 'whatever' },
};

// Expected [phase, id, error?] after each input; '=' = the same object back.
const expected = {
  lobby: { join: [JOINING, null], joined: '=', refusedFull: '=', refusedOther: '=', lost: '=', rejoin: '=', leave: '=', unknown: '=' },
  joining: { join: '=', joined: [JOINED, 'p2'], refusedFull: [LOBBY, null, 'Room "r" is full.'], refusedOther: [LOBBY, null, 'no answer'], lost: '=', rejoin: '=', leave: [LOBBY, null], unknown: '=' },
  joined: { join: '=', joined: '=', refusedFull: '=', refusedOther: '=', lost: [REJOINING, null], rejoin: [REJOINING, null], leave: [LOBBY, null], unknown: '=' },
  rejoining: { join: '=', joined: [JOINED, 'p2'], refusedFull: [LOBBY, null, 'Room "r" is full.'], refusedOther: '=', lost: '=', rejoin: [REJOINING, null], leave: [LOBBY, null], unknown: '=' },
  failed: { join: '=', joined: '=', refusedFull: '=', refusedOther: '=', lost: '=', rejoin: '=', leave: [LOBBY, null], unknown: '=' },
};

test('every phase × every input', () => {
  for (const [name, state] of Object.entries(states)) {
    for (const [inputName, input] of Object.entries(inputs)) {
      const want = expected[name][inputName];
      const got = reduce(state, input);
      const where = `${name} + ${inputName}`;
      if (want === '=') {
        assert.equal(got, state, where);
        continue;
      }
      assert.equal(got.phase, want[0], where);
      assert.equal(got.id, want[1], where);
      if (want[2] !== undefined) assert.equal(got.error, want[2], where);
      if (got.phase === LOBBY) assert.equal(got.room, null, where);
    }
  }
});

test('a join names the room and the user; leaving forgets them', () => {
  const s = reduce(initialRoom, { type: 'join', room: 'r', name: 'Ann' });
  assert.deepEqual([s.room, s.name, inRoom(s)], ['r', 'Ann', true]);
  const left = reduce(reduce(s, { type: 'joined', id: 'p' }), { type: 'leave' });
  assert.deepEqual(left, initialRoom);
  assert.equal(inRoom(left), false);
});

test('rejoins are limited per window, and the window slides', () => {
  let s = reduce(reduce(initialRoom, { type: 'join', room: 'r', name: 'Ann' }), { type: 'joined', id: 'p' });
  for (let i = 0; i < MAX_REJOINS; i++) {
    s = reduce(s, { type: 'rejoin', now: i * 1000 });
    assert.equal(s.phase, REJOINING, `rejoin ${i + 1}`);
  }
  const failed = reduce(s, { type: 'rejoin', now: MAX_REJOINS * 1000 });
  assert.equal(failed.phase, FAILED);
  assert.match(failed.error, /keeps failing/);
  assert.equal(inRoom(failed), false, 'a page that gave up does not rejoin by itself');
  // Once the first attempt is older than the window, one more is allowed.
  const later = reduce(s, { type: 'rejoin', now: REJOIN_WINDOW_MS + 1 });
  assert.equal(later.phase, REJOINING);
  assert.equal(later.rejoins.length, MAX_REJOINS);
});
