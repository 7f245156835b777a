// Which tiles an SFU room page shows (pure, tested by tests/pages/tiles.test.mjs).
//
// A tile per other participant (its camera and microphone, under its participant id) and
// one per shared screen (under the screen's stream id, `participants[].screen`). Remote
// tracks arrive grouped by MediaStream id, which is the tile's key.

/** The tiles for the server's `participants` list, ours left out. */
export function roomTiles(participants, selfId) {
  const tiles = [];
  for (const p of Array.isArray(participants) ? participants : []) {
    if (!p || typeof p.id !== 'string' || p.id === selfId) continue;
    tiles.push({ key: p.id, participant: p.id, source: 'camera', info: p });
    if (typeof p.screen === 'string' && p.screen) tiles.push({ key: p.screen, participant: p.id, source: 'screen', info: p });
  }
  return tiles;
}

const SCREEN_SUFFIX = '-screen';

/** The tile a remote stream belongs to (also before the participants list names it). */
export function tileOfStream(streamId, participants) {
  const list = Array.isArray(participants) ? participants : [];
  const owner = list.find((p) => p?.id === streamId);
  if (owner) return { key: streamId, participant: owner.id, source: 'camera' };
  const sharer = list.find((p) => p?.screen === streamId);
  if (sharer) return { key: streamId, participant: sharer.id, source: 'screen' };
  if (streamId.endsWith(SCREEN_SUFFIX)) return { key: streamId, participant: streamId.slice(0, -SCREEN_SUFFIX.length), source: 'screen' };
  return { key: streamId, participant: streamId, source: 'camera' };
}

/**
 * Which tile is shown large: the user's choice while its tile exists (`userPin`: a tile key,
 * or `''` for none), else the newest shared screen (what everybody wants to look at), else none.
 */
export function pinnedTile(tiles, userPin) {
  if (userPin === '') return null;
  if (userPin && tiles.some((t) => t.key === userPin)) return userPin;
  const screens = tiles.filter((t) => t.source === 'screen');
  return screens.length ? screens[screens.length - 1].key : null;
}
