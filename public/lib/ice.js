// ICE servers for RTCPeerConnection, from the server's GET /api/ice-servers: STUN and TURN
// with time-limited credentials (docs/protocol.md, "HTTP API"). Both pages use it, so a
// participant behind a NAT or a UDP-blocking firewall can always fall back to the relay.

/** Credentials are refreshed when this fraction of their lifetime has passed. */
const REFRESH_AT = 0.9;
/** Lifetime assumed when the answer holds no credentials (`ttl` 0): re-asked hourly. */
const DEFAULT_TTL_S = 3600;

/**
 * The page's ICE configuration from the endpoint's JSON body.
 * @returns {{iceServers: RTCIceServer[], expiresAt: number}}
 */
export function parseIceServers(body, now) {
  const ttl = Number(body?.ttl) > 0 ? Number(body.ttl) : DEFAULT_TTL_S;
  const iceServers = Array.isArray(body?.iceServers)
    ? body.iceServers.filter((s) => s && (typeof s.urls === 'string' || Array.isArray(s.urls)))
    : [];
  return { iceServers, expiresAt: now + ttl * 1000 * REFRESH_AT };
}

export const isStale = (config, now) => !config || now >= config.expiresAt;

/**
 * Fetches the ICE servers. On failure returns `fallback` (or none: a direct connection may
 * still work) and reports the error through `onError`.
 */
export async function loadIceServers({ fetchFn = fetch, now = Date.now(), fallback = null, onError = () => {}, token = null } = {}) {
  try {
    // With tokens on, TURN credentials only for a page that may join (lib/token.js).
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    const res = await fetchFn('/api/ice-servers', { cache: 'no-store', headers });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return parseIceServers(await res.json(), now);
  } catch (err) {
    onError(err);
    return fallback ?? { iceServers: [], expiresAt: 0 };
  }
}
