import { test } from 'node:test';
import assert from 'node:assert/strict';

import { canModerate, isMuted, moderationError, muteNotice, removalNotice } from '../../public/lib/moderation.js';

const list = [{ id: 'p1', name: 'Ada' }, { id: 'p2', name: 'Bob', muted: true }];

test('who moderates: a grant, or without tokens the first in the list', () => {
  assert.equal(canModerate('granted', list, 'p2'), true);
  assert.equal(canModerate('host', list, 'p1'), true);
  assert.equal(canModerate('host', list, 'p2'), false);
  assert.equal(canModerate('none', list, 'p1'), false, 'a token without the grant');
  assert.equal(canModerate(undefined, list, 'p1'), false, 'an older server says nothing');
  assert.equal(canModerate('host', [], 'p1'), false);
  assert.equal(canModerate('host', list, null), false, 'not joined');
});

test('muted participants', () => {
  assert.equal(isMuted(list, 'p2'), true);
  assert.equal(isMuted(list, 'p1'), false);
  assert.equal(isMuted(null, 'p2'), false);
});

test('notices and errors in words', () => {
  assert.equal(removalNotice({ by: 'Ada', reason: 'removed' }), 'Ada removed you from the room.');
  assert.equal(removalNotice({ by: 'Ada', reason: 'room_ended' }), 'Ada ended the room for everyone.');
  assert.equal(removalNotice({}), 'A moderator removed you from the room.');
  assert.match(muteNotice(true), /muted your microphone/);
  assert.match(muteNotice(false), /unmuted/);
  assert.equal(moderationError({ code: 'not_moderator' }), 'Only a moderator can do that.');
  assert.equal(moderationError({ code: 'x', message: 'boom' }), 'Cannot moderate: boom');
  assert.equal(moderationError(undefined), 'Cannot moderate: no answer from the server');
});
