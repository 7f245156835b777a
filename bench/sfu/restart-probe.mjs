// Server-driven ICE restart with real Chromium (docs/BENCHMARKS.md, "Browsers"): two pages in
// an SFU room, then UDP to the SFU's media port is dropped for DROP_S seconds with nft. The
// server should offer an ICE restart over signaling and the video come back; past
// silence_limit + restart_timeout (8 + 10 s) the participants are dropped instead.
// Needs root, nft and `npm ci --prefix tests`; run it in a loopback-only namespace:
//
//   unshare --net --pid --fork --kill-child --mount-proc sh -c 'ip link set lo up &&
//     SIGNAL_BIN=target/release/signal DROP_S=12 node bench/sfu/restart-probe.mjs'
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../../tests/lib/server.mjs';
import { launchChromium, until } from '../../tests/lib/browser.mjs';

const DROP_S = Number(process.env.DROP_S ?? 12);
const server = await startServer({});
const browser = await launchChromium();
const pages = [];
const nft = (...args) => execFileSync('nft', args, { stdio: 'inherit' });
try {
  for (const name of ['Ada', 'Bob']) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${server.url}/sfu.html?res=320x240&fps=15`);
    await page.waitForFunction(() => document.body.dataset.ready === 'true');
    await page.getByTestId('room').fill('probe');
    await page.getByTestId('name').fill(name);
    await page.getByTestId('join').click();
    await page.waitForFunction(() => window.__sfu.id);
    pages.push(page);
  }
  const frames = (page) => page.evaluate(async () => {
    let n = 0;
    (await window.__sfu.pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') n += r.framesDecoded ?? 0; });
    return n;
  });
  for (const page of pages) await until('video decoding', async () => (await frames(page)) > 10, 30_000);
  const report = () => server.operator('/api/rooms');
  const port = (await report()).media_address.split(':').pop();
  console.log(`media port ${port}; dropping UDP to it for ${DROP_S} s`);
  nft('add', 'table', 'inet', 'probe');
  nft('add', 'chain', 'inet', 'probe', 'input', '{ type filter hook input priority 0 ; }');
  nft('add', 'rule', 'inet', 'probe', 'input', 'udp', 'dport', port, 'drop');
  const t0 = Date.now();
  await sleep(DROP_S * 1000);
  const during = await report();
  nft('delete', 'table', 'inet', 'probe');
  console.log(`network back after ${Date.now() - t0} ms; ice_restarts so far ${during.ice_restarts}, participants ${during.participants}`);
  const before = await Promise.all(pages.map(frames));
  const t1 = Date.now();
  for (const [i, page] of pages.entries()) {
    await until('video again', async () => (await frames(page)) > before[i] + 10, 30_000);
  }
  console.log(`video decoding again ${Date.now() - t1} ms after the network came back`);
  const after = await report();
  console.log(JSON.stringify({ ice_restarts: after.ice_restarts, participants: after.participants, per: after.rooms[0]?.participants.map((p) => ({ name: p.name, ice_restarts: p.ice_restarts, negotiations: p.negotiations })) }));
  for (const page of pages) console.log(JSON.stringify((await page.evaluate(() => window.__sfu.events)).filter((e) => ['update', 'connection', 'sfu_error'].includes(e.event)).map((e) => `${e.event}=${JSON.stringify(e.detail)}`)));
} finally {
  await browser.close();
  await server.stop();
}
