// The join token (docs/security.md): a server with an auth secret only lets pages in with a
// signed token, which the application hands out in the page's link (`?token=…`). The page
// keeps it for this tab (a reload or a rejoin needs it again) and takes it out of the address
// bar, so it does not end up in bookmarks, shared screenshots or the history.

const KEY = 'rtc-call-token';

/**
 * The token of this page: from the URL (which is then to be replaced by `url`, without it)
 * or from earlier in this tab. Pure: `href` and `storage` are passed in.
 * @returns {{token: string|null, url: string|null}} `url`: the address to show instead, if it changed
 */
export function takeToken(href, storage) {
  const url = new URL(href);
  const given = url.searchParams.get('token');
  if (given) {
    storage?.setItem(KEY, given);
    url.searchParams.delete('token');
    return { token: given, url: url.pathname + (url.search || '') + url.hash };
  }
  return { token: storage?.getItem(KEY) ?? null, url: null };
}

/** Whether a `connect_error` is the server refusing our token (docs/protocol.md). */
export function isTokenError(message) {
  return typeof message === 'string' && /^(token_required|invalid_token|token_expired|token_not_yet_valid):/.test(message);
}

/** The page's token, adopted once per page load (browser only). */
export function pageToken() {
  const { token, url } = takeToken(location.href, sessionStorage);
  if (url !== null) history.replaceState(history.state, '', url);
  return token;
}
