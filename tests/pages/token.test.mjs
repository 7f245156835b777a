// The join token of a page (public/lib/token.js): taken from the link, kept for the tab,
// taken out of the address bar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTokenError, takeToken } from '../../public/lib/token.js';

function memoryStorage() {
  const map = new Map();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)) };
}

test('a token in the link is kept and removed from the address', () => {
  const storage = memoryStorage();
  assert.deepEqual(takeToken('https://call.example/sfu.html?room=r&token=a.b.c#x', storage), { token: 'a.b.c', url: '/sfu.html?room=r#x' });
  assert.deepEqual(takeToken('https://call.example/sfu.html?room=r', storage), { token: 'a.b.c', url: null }, 'a reload keeps it');
  assert.deepEqual(takeToken('https://call.example/?token=d.e.f', storage), { token: 'd.e.f', url: '/' }, 'a new link replaces it');
  assert.deepEqual(takeToken('https://call.example/', memoryStorage()), { token: null, url: null });
});

test('token refusals are told apart from network errors', () => {
  assert.equal(isTokenError('token_expired: the token has expired'), true);
  assert.equal(isTokenError('invalid_token: InvalidSignature'), true);
  assert.equal(isTokenError('xhr poll error'), false);
  assert.equal(isTokenError(undefined), false);
});
