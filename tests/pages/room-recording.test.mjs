// The room-recording chip and button (public/lib/room-recording.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { recordingError, recordingNotice, recordingView } from '../../public/lib/room-recording.js';

test('the chip shows while the server records, with who started it', () => {
  assert.deepEqual(recordingView(null), { chipHidden: true, chipTitle: '', pressed: false, buttonTitle: 'Record the room on the server (everyone is told)' });
  const on = recordingView({ on: true, by: 'Ann', since: 1 });
  assert.equal(on.chipHidden, false);
  assert.equal(on.pressed, true);
  assert.match(on.chipTitle, /started by Ann/);
  assert.equal(recordingView({ on: true, by: 42 }).chipTitle, 'This room is being recorded by the server');
});

test('notices when it starts and stops, and why', () => {
  assert.equal(recordingNotice(null, { on: true, by: 'Ann' }), 'Recording started by Ann.');
  assert.equal(recordingNotice({ on: true }, { on: true, by: 'Bob' }), null);
  assert.equal(recordingNotice({ on: true }, { on: false, reason: 'storage_failed' }), 'Recording stopped: the server could not store it.');
  assert.equal(recordingNotice({ on: true }, { on: false, reason: 'size_limit' }), 'Recording stopped: it reached the size the server allows.');
  assert.equal(recordingNotice({ on: true }, { on: false, reason: 'something new' }), 'Recording stopped.');
  assert.equal(recordingNotice(null, { on: false, reason: 'stopped' }), null);
});

test('refusals in words', () => {
  assert.match(recordingError({ code: 'record_not_allowed' }), /does not allow/);
  assert.match(recordingError({ code: 'nothing_to_record' }), /Nobody/);
  assert.equal(recordingError({ code: 'x', message: 'm' }), 'm');
});
