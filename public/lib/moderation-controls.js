// The room page's moderation controls (docs/protocol.md, `moderate`): buttons on the others'
// camera tiles and the end-room button while we may moderate, our microphone locked while a
// moderator mutes us. What to decide is in lib/moderation.js; sfu.js gives what this binds to.

import { canModerate, isMuted, moderationError, muteNotice } from './moderation.js';

/**
 * @param {{hooks: object, send: (data: object) => Promise<object>, mic: HTMLButtonElement,
 *   endRoom: HTMLButtonElement, audioTracks: () => MediaStreamTrack[],
 *   notice: (text: string) => void, error: (text: string) => void,
 *   log: (event: string, detail?: unknown) => void}} deps  `send` emits `moderate` and
 *   resolves with its ack (`{error}` on failure).
 */
export function createModerationControls({ hooks, send, mic, endRoom, audioTracks, notice, error, log }) {
  let mode = 'none'; // the join answer's `moderation`
  let muted = false;

  async function moderate(action, participant) {
    log('moderate', { action, participant });
    const reply = await send({ action, participant });
    if (reply?.error) error(moderationError(reply.error));
  }

  endRoom.onclick = () => {
    if (confirm('End the room for everyone?')) moderate('end');
  };

  return {
    /** The join answer says who moderates. */
    joined(answerMode) {
      mode = answerMode ?? 'none';
    },

    /** A camera tile's moderator buttons (shown while we may moderate: body.moderating). */
    tileActions(participant) {
      const box = document.createElement('div');
      box.className = 'mod-actions';
      const button = (testid, label, onclick) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.dataset.testid = testid;
        b.textContent = label;
        // A click on the tile pins it; one on its buttons does only what the button says.
        b.addEventListener('click', (e) => { e.stopPropagation(); onclick(); });
        box.append(b);
      };
      button('mod-mute', 'Mute', () => moderate(isMuted(hooks.participants, participant) ? 'unmute' : 'mute', participant));
      button('mod-remove', 'Remove', () => {
        const name = hooks.participants.find((p) => p.id === participant)?.name ?? 'this participant';
        if (confirm(`Remove ${name} from the room?`)) moderate('remove', participant);
      });
      return box;
    },

    /** A camera tile shows whether a moderator muted its participant (`info`). */
    showTile(el, info) {
      el.classList.toggle('moderator-muted', info.muted === true);
      const mute = el.querySelector('[data-testid="mod-mute"]');
      mute.textContent = info.muted ? 'Unmute' : 'Mute';
      mute.title = info.muted ? `Let ${info.name} be heard again` : `Mute ${info.name} for everyone`;
    },

    /** Who may moderate, and whether a moderator muted us, as the participant list now says. */
    update(list) {
      const may = canModerate(mode, list, hooks.id);
      document.body.classList.toggle('moderating', may);
      endRoom.hidden = !may;
      const now = isMuted(list, hooks.id);
      if (now === muted) return;
      muted = now;
      hooks.mutedByModerator = now;
      // The server drops our audio anyway; the page says so and keeps the microphone off.
      const tracks = audioTracks();
      if (now) {
        tracks.forEach((t) => { t.enabled = false; });
        mic.setAttribute('aria-pressed', 'false');
        mic.querySelector('use').setAttribute('href', '#i-mic-off');
      }
      mic.disabled = now || !tracks.length;
      mic.title = now ? 'A moderator muted you' : 'Microphone';
      notice(muteNotice(now));
      log('muted-by-moderator', now);
    },

    /** Out of the room: nothing to moderate, nobody muting us. */
    reset() {
      mode = 'none';
      muted = false;
      hooks.mutedByModerator = false;
      document.body.classList.remove('moderating');
      endRoom.hidden = true;
      mic.title = 'Microphone';
    },
  };
}
