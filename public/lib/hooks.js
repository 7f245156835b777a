// The pages' one test hook object, `window.__rtc` (stable; tests/ read it):
//   page          'call' (1-to-1) or 'sfu'
//   pc            the current RTCPeerConnection, or null
//   pcGeneration  +1 for every RTCPeerConnection created
//   state         the page's signaling state (1-to-1: the server's state names)
//   events        log: {t: Date.now(), event, detail} (1-to-1 server events: {t, event, args})
//   socket        the socket.io socket
//   id            our id in the room (SFU)
//   participants  the last participant list (SFU)
const MAX_EVENTS = 2000;

export function createHooks(page) {
  const hooks = { page, pc: null, pcGeneration: 0, state: null, events: [], socket: null, id: null, participants: [] };
  window.__rtc = hooks;
  return hooks;
}

export function logEvent(hooks, event, detail) {
  hooks.events.push({ t: Date.now(), event, detail });
  if (hooks.events.length > MAX_EVENTS) hooks.events.splice(0, hooks.events.length - MAX_EVENTS);
}
