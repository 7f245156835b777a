// What the statistics panel costs the page that shows it: a 1-to-1 call between two Chromium
// pages, and on page A the renderer's busy time (CDP Performance.getMetrics TaskDuration)
// over WINDOW_S seconds with the panel closed and with it open (six uPlot charts redrawn
// every second), alternating, RUNS times each. Both states sample getStats() once a second
// (the panel collects for the whole call), so the difference is the drawing.
//
//   cargo build --release -p signal && unshare --net --pid --fork --kill-child --mount-proc \
//     sh -c 'ip link set lo up && SIGNAL_BIN=$PWD/target/release/signal node bench/pages/stats-panel.mjs'
// Knobs: RUNS=3 WINDOW_S=15
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer } from '../../tests/lib/server.mjs';
import { launchChromium } from '../../tests/lib/browser.mjs';

const RUNS = Number(process.env.RUNS ?? 3);
const WINDOW_S = Number(process.env.WINDOW_S ?? 15);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const server = await startServer();
const browser = await launchChromium();
try {
  const pages = [];
  for (let i = 0; i < 2; i++) {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 720 } })).newPage();
    await page.goto(`${server.url}/`);
    await page.getByTestId('room').fill('bench-stats');
    await page.getByTestId('join').click();
    pages.push(page);
  }
  const [a] = pages;
  for (const page of pages) await page.waitForFunction(() => document.querySelector('[data-testid="remote-video"]')?.videoWidth > 0, null, { timeout: 30_000 });
  await sleep(3000);
  const cdp = await a.context().newCDPSession(a);
  await cdp.send('Performance.enable');
  const busy = async () => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration').value;
  const results = { closed: [], open: [] };
  for (let run = 0; run < RUNS; run++) {
    for (const state of ['closed', 'open']) {
      const open = await a.getByTestId('stats-panel').isVisible();
      if (open !== (state === 'open')) await a.getByTestId('toggle-stats').click();
      await sleep(1500);
      const t0 = await busy();
      await sleep(WINDOW_S * 1000);
      results[state].push(((await busy()) - t0) / WINDOW_S);
    }
  }
  const [closed, open] = [median(results.closed), median(results.open)];
  console.log(`renderer busy time of the page, share of one core, medians of ${RUNS} × ${WINDOW_S} s:`);
  console.log(`  panel closed: ${(closed * 100).toFixed(1)} %   runs ${results.closed.map((x) => (x * 100).toFixed(1)).join(' ')}`);
  console.log(`  panel open:   ${(open * 100).toFixed(1)} %   runs ${results.open.map((x) => (x * 100).toFixed(1)).join(' ')}`);
  console.log(`  open/closed: ${(open / closed).toFixed(2)}×  (+${((open - closed) * 100).toFixed(1)} % of a core)`);
} finally {
  await browser.close();
  await server.stop();
}
