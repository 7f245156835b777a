// Active speaker in SFU rooms, in real Chromium (issue 10): the server ranks speakers from the
// RFC 6464 audio levels Chromium puts on its packets and tells the room (`speakers`); the page
// marks the speaker's tile.
//
// Ann's and Cid's browsers play speech-like sound as their microphone
// (--use-file-for-fake-audio-capture, a WAV made with ffmpeg); Bob's plays silence. Cid starts muted: Bob's page must show Ann as
// the speaker; then Ann mutes and Cid unmutes, and it must follow to Cid; with both muted,
// nobody. Every tile also shows the server's grade of that participant's connection. Run it
// like tests/browser/sfu.test.mjs (scripts/test does).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../lib/server.mjs';
import { joinSfuRoom, launchChromium, until } from '../lib/browser.mjs';

const ROOM = `speakers-${process.pid}`;
const WAIT_MS = 20_000;

let server;
let dir;
const browsers = [];

function wav(name, source) {
  const file = join(dir, name);
  execFileSync('ffmpeg', ['-loglevel', 'error', '-f', 'lavfi', '-i', source, '-t', '10', '-ac', '1', '-ar', '48000', file]);
  return file;
}

async function participant(label, microphone) {
  const browser = await launchChromium([`--use-file-for-fake-audio-capture=${microphone}`]);
  browsers.push(browser);
  return joinSfuRoom(browser, `${server.url}/sfu.html?res=320x240&fps=15`, { room: ROOM, name: label, timeout: WAIT_MS });
}

const mic = (page) => page.locator('#toggle-mic');
const micOn = async (page) => (await mic(page).getAttribute('aria-pressed')) === 'true';

/** The speaker Bob's page shows: the server's top speaker and the marked tile. */
function shownSpeaker(page) {
  return page.evaluate(() => ({
    speaker: window.__rtc.speaker ?? null,
    marked: [...document.querySelectorAll('.tile.active-speaker')].map((t) => t.dataset.participant ?? 'local'),
  }));
}

async function expectSpeaker(page, who, label) {
  const t0 = Date.now();
  await until(`${label}: ${page.label} shows ${who?.label ?? 'nobody'} speaking`, async () => {
    const shown = await shownSpeaker(page);
    const expected = who ? [who.id] : [];
    if (shown.speaker === (who?.id ?? null) && JSON.stringify(shown.marked) === JSON.stringify(expected)) return true;
    throw new Error(JSON.stringify(shown));
  }, WAIT_MS, 100);
  return Date.now() - t0;
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'speakers-'));
  server = await startServer();
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('active speaker in SFU rooms', { timeout: 120_000 }, () => {
  it('the marked speaker follows who talks', async () => {
    // Speech-like: a gliding voiced tone in 4 Hz syllables (Chromium's noise suppressor
    // removes a steady tone as noise).
    const tone = wav('speech.wav', "aevalsrc='0.7*sin(2*PI*(180+60*sin(2*PI*0.7*t))*t)*gt(sin(2*PI*4*t),-0.3)':s=48000");
    const silence = wav('silence.wav', 'anullsrc=r=48000:cl=mono');
    const ann = await participant('Ann', tone);
    const cid = await participant('Cid', tone);
    await mic(cid).click();
    assert.equal(await micOn(cid), false, 'Cid muted');
    const bob = await participant('Bob', silence);
    const figures = {};
    figures.annMs = await expectSpeaker(bob, ann, 'Ann talks');

    await mic(ann).click();
    await mic(cid).click();
    figures.cidMs = await expectSpeaker(bob, cid, 'Cid takes over');
    // Cid's own page marks its own tile.
    await until('Cid\'s page marks its own tile', async () => {
      const shown = await shownSpeaker(cid);
      if (shown.speaker === cid.id && JSON.stringify(shown.marked) === '["local"]') return true;
      throw new Error(JSON.stringify(shown));
    }, WAIT_MS);

    await mic(cid).click();
    figures.nobodyMs = await expectSpeaker(bob, null, 'both muted');

    // On loopback every connection is graded good, and each tile shows it.
    await until('Bob\'s tiles show three good connections', async () => {
      const shown = await bob.evaluate(() => [...document.querySelectorAll('.tile')].map((t) => t.dataset.connection ?? null));
      if (shown.length === 3 && shown.every((q) => q === 'good')) return true;
      throw new Error(JSON.stringify(shown));
    }, WAIT_MS);
    console.log('figures', JSON.stringify(figures));
  });
});
