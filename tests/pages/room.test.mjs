// Room names and join refusals as the room page says them (public/lib/room.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { isValidRoom, joinRefusal } from '../../public/lib/room.js';

test('room names the server accepts', () => {
  assert.ok(isValidRoom('stand-up_2.0~x'));
  for (const bad of ['', 'a b', 'x'.repeat(65), 'ünï', null]) assert.equal(isValidRoom(bad), false, String(bad));
});

test('join refusals in words: full room, passcodes, anything else as the server said it', () => {
  assert.equal(joinRefusal({ code: 'full' }, 'r1'), 'Room "r1" is full.');
  assert.equal(joinRefusal({ code: 'passcode_required' }, 'r1'), 'Room "r1" has a passcode: enter it to join.');
  assert.equal(joinRefusal({ code: 'wrong_passcode' }, 'r1'), 'Wrong passcode for room "r1".');
  assert.match(joinRefusal({ code: 'passcode_rate_limited' }, 'r1'), /Too many wrong passcodes/);
  assert.equal(joinRefusal({ code: 'media_error', message: 'the media server could not accept this offer' }, 'r1'), 'the media server could not accept this offer');
  assert.equal(joinRefusal(undefined, 'r1'), 'The room could not be joined.');
});
