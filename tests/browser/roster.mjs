// presenced --demo in headless Chromium: a page on another origin polls it with the
// client (allowed origin), a page on a third origin is refused, and the roster page at
// / follows the demo; ends with a screenshot of the roster.
//
// Starts, on 127.0.0.1 ports the kernel picks: two tiny static servers (the allowed
// origin and a disallowed one), then the presenced binary with --demo and the first
// one's origin in PRESENCED_CORS_ALLOWED_ORIGINS, then Chromium. Stops all of them
// at the end, on failure, on SIGTERM and at the watchdog.
//
// Environment (set by tests/api/browser.rs): PRESENCED_BIN (the binary),
// PRESENCED_CHROMIUM (the browser), PRESENCED_SCREENSHOT (where the PNG goes).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { delay, env, eventually, fetchWithin, ingest, step, watchdog } from './lib.mjs';

const BIN = env('PRESENCED_BIN');
const CHROMIUM = env('PRESENCED_CHROMIUM');
const SCREENSHOT = env('PRESENCED_SCREENSHOT');
/** The cross-origin page's poll interval; the roster's own is 1000 ms. */
const INTERVAL = 500;
const ROSTER_INTERVAL = 1000;
// Seeded by --demo (src/demo.rs).
const DEMO = { userId: 'aobEdbYhXfu5hkeqG', authToken: '9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq' };
const DEMO_INGEST_TOKEN = 'demo-ingest-token';

const cleanups = [];
let cleaning = null;
function cleanup() {
  // Once, whoever asks first (end, failure, SIGTERM, watchdog).
  cleaning ??= (async () => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (e) {
        console.error('cleanup:', e.message);
      }
    }
  })();
  return cleaning;
}
watchdog(200_000, cleanup);
process.on('SIGTERM', async () => {
  console.error('SIGTERM: cleaning up');
  await cleanup();
  process.exit(1);
});

/** The test pages, given presenced's URL `p`. */
const PAGES = {
  // The client as a classic script from presenced, polling it cross-origin.
  '/poll.html': (p) => `<!doctype html><meta charset="utf-8"><title>cross-origin poll</title>
<ul id="users"></ul>
<script src="${p}/client/presence.js"></script>
<script>
  const q = new URLSearchParams(location.hash.slice(1));
  window.changes = [];
  window.polls = [];
  const client = new PresenceClient({ baseUrl: q.get('base'), userId: q.get('userId'),
    authToken: q.get('authToken'), intervalMs: Number(q.get('interval')) });
  client.addEventListener('change', (e) => {
    for (const u of e.detail.users) window.changes.push({ id: u._id, status: u.status, at: Date.now() });
    document.getElementById('users').replaceChildren(...[...client.users().values()].map((u) => {
      const li = document.createElement('li');
      li.dataset.id = u._id;
      li.dataset.status = u.status;
      li.textContent = u.username + ' ' + u.status;
      return li;
    }));
  });
  client.addEventListener('poll', (e) => window.polls.push({ ...e.detail, at: Date.now() }));
  client.start();
  window.client = client;
</script>`,
  // The client as an ES module: a cross-origin module import needs CORS on /client.
  '/module.html': (p) => `<!doctype html><meta charset="utf-8"><title>module</title>
<script type="module">
  import { PresenceClient } from '${p}/client/presence.mjs';
  window.moduleResult = typeof PresenceClient;
</script>`,
  '/blank.html': () => '<!doctype html><meta charset="utf-8"><title>blank</title>',
};

let presencedUrl = '';

async function startStaticServer() {
  const server = http.createServer((req, res) => {
    const page = PAGES[req.url.split('?')[0]];
    res.writeHead(page ? 200 : 404, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page ? page(presencedUrl) : 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  return `http://127.0.0.1:${server.address().port}`;
}

/** Starts presenced with `args` and `vars`; resolves with its URL once /health answers. */
async function startPresenced(args, vars) {
  const child = spawn(BIN, [...args, '--bind', '127.0.0.1:0'], {
    env: { PATH: process.env.PATH, ...vars },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (chunk) => (log += chunk));
  let exited = null;
  child.on('exit', (code, signal) => (exited = { code, signal }));
  // A backstop for exits that skip cleanup (an uncaught error): never leave it running.
  process.on('exit', () => exited || child.kill('SIGKILL'));
  cleanups.push(async () => {
    if (exited) return;
    child.kill('SIGTERM');
    try {
      await eventually('presenced to exit after SIGTERM', () => exited, 10_000);
      assert.equal(exited.code, 0, `presenced exit: ${JSON.stringify(exited)}`);
    } catch (e) {
      child.kill('SIGKILL');
      throw e;
    }
  });
  const port = await eventually('presenced to log its port', () => {
    if (exited) throw new Error(`presenced exited: ${JSON.stringify(exited)}\n${log}`);
    const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
    return m && m[1];
  }, 15_000);
  const url = `http://127.0.0.1:${port}`;
  await eventually('/health', async () => (await fetchWithin(`${url}/health`, {}, 2000)).ok, 15_000);
  return url;
}

/** Resolves with what `fetch(url, init)` from `page` gave: `status N` or `blocked: <error>`. */
function fetchFrom(page, url, init = {}) {
  return page.evaluate(async ([url, init]) => {
    try {
      const res = await fetch(url, init);
      return `status ${res.status}`;
    } catch (e) {
      return `blocked: ${e.name}`;
    }
  }, [url, init]);
}

const AUTH = { headers: { 'X-User-Id': DEMO.userId, 'X-Auth-Token': DEMO.authToken } };

try {
  step('static servers: the allowed origin and a disallowed one');
  const allowed = await startStaticServer();
  const disallowed = await startStaticServer();

  step(`presenced --demo, allowing ${allowed}`);
  presencedUrl = await startPresenced(['--demo'], { PRESENCED_CORS_ALLOWED_ORIGINS: allowed });
  const internal = ingest(presencedUrl, DEMO_INGEST_TOKEN);

  step('chromium');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'presenced-chromium-'));
  cleanups.push(() => fs.rmSync(profile, { recursive: true, force: true }));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    timeout: 60_000,
    // This script cleans up on signals itself, in order: browser, then presenced.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  cleanups.push(() => browser.close());
  browser.setDefaultTimeout(15_000);
  const pageErrors = [];
  browser.on('weberror', (e) => pageErrors.push(String(e.error())));

  step('a page on the allowed origin polls cross-origin with the classic script');
  const page = await browser.newPage();
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(`${page.url()}: ${m.text()}`));
  const fragment = new URLSearchParams({ base: presencedUrl, ...DEMO, interval: INTERVAL });
  await page.goto(`${allowed}/poll.html#${fragment}`);
  await page.locator('li[data-id="rocket.cat"]').waitFor();
  await page.locator('li[data-id="rocketchat.internal.admin.test"]').waitFor();
  assert.ok((await page.locator('li[data-id^="sim"]').count()) > 0, 'simulated users are shown');

  step('a status change through the internal API shows within two poll intervals');
  const t0 = Date.now();
  await internal.status('rocket.cat', 'busy', 'in the browser test');
  await page.locator('li[data-id="rocket.cat"][data-status="busy"]').waitFor();
  const seen = await page.evaluate(() => window.changes.find((c) => c.id === 'rocket.cat' && c.status === 'busy'));
  assert.ok(seen.at - t0 <= 2 * INTERVAL, `seen after ${seen.at - t0} ms, more than two intervals of ${INTERVAL} ms`);
  console.log(`  seen after ${seen.at - t0} ms`);
  const polls = await page.evaluate(() => window.polls);
  assert.ok(polls.every((p) => p.ok), JSON.stringify(polls.filter((p) => !p.ok)));
  assert.equal(polls[0].full, true);

  step('pausing while hidden, resuming when shown');
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  // The poll in flight and the timer already set may still run once each: wait until
  // two intervals pass without a poll, then make sure three more do too.
  const pollCount = () => page.evaluate(() => window.polls.length);
  const hiddenCount = await eventually('polling to stop while hidden', async () => {
    const before = await pollCount();
    await delay(2 * INTERVAL + 100);
    const after = await pollCount();
    return after === before && after;
  }, 10_000);
  await delay(3 * INTERVAL);
  assert.equal(await pollCount(), hiddenCount, 'no poll while hidden');
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await eventually('a poll after the page is shown', async () => (await pollCount()) > hiddenCount, 3000);

  step('the allowed origin reads the API, imports the module, but not the internal API or the probes');
  assert.equal(await fetchFrom(page, `${presencedUrl}/api/v1/users.presence`, AUTH), 'status 200');
  assert.equal(await fetchFrom(page, `${presencedUrl}/health`), 'blocked: TypeError');
  assert.equal(await fetchFrom(page, `${presencedUrl}/internal/v1/stats`,
    { headers: { Authorization: `Bearer ${DEMO_INGEST_TOKEN}` } }), 'blocked: TypeError');
  const modulePage = await browser.newPage();
  await modulePage.goto(`${allowed}/module.html`);
  await modulePage.waitForFunction(() => window.moduleResult === 'function');
  await modulePage.close();

  step('a page on a disallowed origin cannot read the API');
  const other = await browser.newPage();
  await other.goto(`${disallowed}/blank.html`);
  assert.equal(await fetchFrom(other, `${presencedUrl}/api/v1/users.presence`, AUTH), 'blocked: TypeError');
  assert.equal(await fetchFrom(other, `${presencedUrl}/api/v1/users.presence`), 'blocked: TypeError');
  assert.equal(await other.evaluate(async (url) => {
    try {
      await import(url);
      return 'imported';
    } catch (e) {
      return 'refused';
    }
  }, `${presencedUrl}/client/presence.mjs`), 'refused');
  await other.close();
  // The refusals above are expected console errors, and not the pages' own.
  pageErrors.length = 0;

  step('the roster page at / follows the demo');
  const roster = await browser.newPage();
  roster.on('console', (m) => m.type() === 'error' && pageErrors.push(`${roster.url()}: ${m.text()}`));
  await roster.goto(`${presencedUrl}/`);
  await roster.locator('tr[data-id="rocket.cat"][data-status="busy"]').waitFor();
  await roster.locator('tr[data-id="rocketchat.internal.admin.test"]').waitFor();
  assert.match(await roster.locator('tr[data-id="rocketchat.internal.admin.test"] td.time').textContent(), /^\d\d:\d\d \(UTC−2\)$/);
  assert.equal(await roster.locator('tr[data-id="rocket.cat"] td.text').textContent(), 'in the browser test');
  await roster.evaluate(() => {
    window.changes = [];
    window.presencedRoster.client.addEventListener('change', (e) => {
      for (const u of e.detail.users) window.changes.push({ id: u._id, status: u.status, at: Date.now() });
    });
  });
  const t1 = Date.now();
  await internal.status('rocket.cat', 'away', 'taking a screenshot');
  await roster.locator('tr[data-id="rocket.cat"][data-status="away"]').waitFor();
  const seenOnRoster = await roster.evaluate(() => window.changes.find((c) => c.id === 'rocket.cat' && c.status === 'away'));
  assert.ok(seenOnRoster.at - t1 <= 2 * ROSTER_INTERVAL, `roster saw it after ${seenOnRoster.at - t1} ms`);
  console.log(`  roster saw it after ${seenOnRoster.at - t1} ms`);
  // Found and read in one step in the page: the roster replaces its rows on every
  // change (the churn's, every second), and a dot found a moment before may be gone
  // from the document, where its computed style is empty.
  const dotColour = () => roster.evaluate(() =>
    getComputedStyle(document.querySelector('tr[data-id="rocket.cat"] .dot')).backgroundColor);
  assert.equal(await dotColour(), 'rgb(241, 196, 15)');
  // Updates without reload: the churn changes someone every second.
  const churned = await eventually('a churned simulated user on the roster', () =>
    roster.evaluate(() => window.changes.some((c) => c.id.startsWith('sim'))), 10_000);
  assert.ok(churned);
  const readCounts = () => roster.evaluate(() =>
    Object.fromEntries(['online', 'away', 'busy', 'offline'].map((s) => [s, Number(document.getElementById('count-' + s).textContent)])));
  // Every status on the page at once, for the checks below and the screenshot.
  const counts = await eventually('the churn to make someone busy and someone go offline', async () => {
    const c = await readCounts();
    return c.busy > 0 && c.offline > 0 && c;
  }, 30_000);
  assert.ok(counts.online + counts.away + counts.busy >= 2, JSON.stringify(counts));
  // Each dot found and read in one step in the page, as above; the churn may take
  // the only busy or offline row away between two steps, so asked again until one
  // of each is there.
  const colours = await eventually('an offline, a busy and an online row at once', () => roster.evaluate(() => {
    const colour = (row) => {
      const dot = document.querySelector(`${row} .dot`);
      return dot && getComputedStyle(dot).backgroundColor;
    };
    const seen = {
      offline: colour('tbody tr[data-status="offline"]'),
      busy: colour('tbody tr[data-status="busy"]'),
      online: colour('tr[data-id="rocketchat.internal.admin.test"]'),
    };
    return seen.offline && seen.busy && seen.online && seen;
  }), 30_000);
  assert.deepEqual(colours, { offline: 'rgb(149, 165, 166)', busy: 'rgb(231, 76, 60)', online: 'rgb(46, 204, 113)' });
  // Read both in one turn of the page, so no poll lands in between.
  const [shown, rows] = await roster.evaluate(() => [
    ['online', 'away', 'busy', 'offline'].map((s) => Number(document.getElementById('count-' + s).textContent)),
    ['online', 'away', 'busy', 'offline'].map((s) => document.querySelectorAll(`tbody tr[data-status="${s}"]`).length),
  ]);
  assert.deepEqual(shown, rows, 'the counts match the rows');
  // On its own origin, in a browser with EventSource, the roster follows the change stream.
  assert.equal(await roster.locator('#mode').textContent(), 'push');
  assert.match(await roster.locator('#last-poll').textContent(), /^pushed \d{2}:\d{2}:\d{2}: (full snapshot|\d+ changed)/,
    'one 24-hour clock, as in the local-time column');

  step(`screenshot to ${SCREENSHOT}`);
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await roster.screenshot({ path: SCREENSHOT });
  assert.ok(fs.statSync(SCREENSHOT).size > 10_000, 'the screenshot has content');

  step('without --demo, PRESENCED_UI_ROSTER=true serves a roster that asks for credentials');
  const plainUrl = await startPresenced([], { PRESENCED_UI_ROSTER: 'true', PRESENCED_INGEST_TOKEN: 'roster-test' });
  const plain = ingest(plainUrl, 'roster-test');
  await plain.user('viewer');
  await plain.token('viewer', 'viewer-token');
  await plain.user('alice', { name: 'Alice', utcOffset: 5.5 });
  await plain.connect('alice', 'online');
  const asking = await browser.newPage();
  asking.on('console', (m) => m.type() === 'error' && pageErrors.push(`${asking.url()}: ${m.text()}`));
  await asking.goto(`${plainUrl}/`);
  assert.equal(await asking.locator('#roster').isVisible(), false);
  assert.doesNotMatch(await asking.content(), /aobEdbYhXfu5hkeqG/, 'no demo credentials outside --demo');
  // The form's fields line up: same left edge, same width, the button under them.
  const [idBox, tokenBox, buttonBox] = await Promise.all(
    ['input[name="userId"]', 'input[name="authToken"]', '#login button'].map((s) => asking.locator(s).boundingBox()));
  assert.equal(idBox.x, tokenBox.x, 'inputs share a left edge');
  assert.equal(idBox.width, tokenBox.width, 'inputs have one width');
  assert.equal(buttonBox.x, idBox.x, 'the button lines up with the inputs');
  assert.ok(buttonBox.y > tokenBox.y + tokenBox.height, 'the button is below the inputs');
  const loginShot = SCREENSHOT.replace(/\.png$/, '-login.png');
  step(`screenshot of the login form to ${loginShot}`);
  await asking.setViewportSize({ width: 900, height: 470 });
  await asking.screenshot({ path: loginShot });
  await asking.locator('input[name="userId"]').fill('viewer');
  await asking.locator('input[name="authToken"]').fill('viewer-token');
  await asking.locator('#login button').click();
  await asking.locator('tr[data-id="alice"][data-status="online"]').waitFor();
  assert.equal(await asking.locator('#login').isVisible(), false);
  assert.match(await asking.locator('tr[data-id="alice"] td.time').textContent(), /\(UTC\+5:30\)$/);
  assert.equal(new URL(asking.url()).hash, '#userId=viewer&authToken=viewer-token');
  // The fragment alone is enough, on a fresh load.
  const linked = await browser.newPage();
  linked.on('console', (m) => m.type() === 'error' && pageErrors.push(`${linked.url()}: ${m.text()}`));
  await linked.goto(`${plainUrl}/#userId=viewer&authToken=viewer-token`);
  await linked.locator('tr[data-id="alice"]').waitFor();
  assert.equal(await linked.locator('#login').isVisible(), false);
  // A wrong token is shown as a failing poll (its 401 is an expected console error)...
  const refused = await browser.newPage();
  await refused.goto(`${plainUrl}/#userId=viewer&authToken=wrong`);
  await refused.locator('#last-poll.failed').waitFor();
  // The stream refused the wrong token (401), so the roster fell back to polling.
  assert.equal(await refused.locator('#mode').textContent(), 'polling');
  assert.match(await refused.locator('#last-poll').textContent(), /poll failed .*HTTP 401.*retrying in/);
  assert.equal(await refused.locator('tbody tr').count(), 0);
  // ...and correcting the fragment starts over with the new credentials.
  await refused.evaluate(() => { location.hash = 'userId=viewer&authToken=viewer-token'; });
  await refused.locator('tr[data-id="alice"]').waitFor();
  assert.equal(await refused.locator('#last-poll.failed').count(), 0);

  step('push: a real EventSource sees a change at once and resumes after the server drops it');
  // Cookies are per host, not per port: the pages above would share the stream's.
  for (const p of [asking, linked, refused, roster, page, modulePage, other]) await p.close();
  // Every stream ends after 2 s, as a server rebalancing its streams would end them.
  const pushUrl = await startPresenced([], {
    PRESENCED_UI_ROSTER: 'true', PRESENCED_INGEST_TOKEN: 'push-test', PRESENCED_STREAM_MAX_LIFETIME_SECS: '2',
  });
  const push = ingest(pushUrl, 'push-test');
  await push.user('viewer');
  await push.token('viewer', 'viewer-token');
  await push.user('alice', { name: 'Alice' });
  await push.connect('alice', 'online');
  const pushed = await browser.newPage();
  pushed.on('console', (m) => m.type() === 'error' && pageErrors.push(`${pushed.url()}: ${m.text()}`));
  await pushed.goto(`${pushUrl}/#userId=viewer&authToken=viewer-token`);
  await pushed.locator('tr[data-id="alice"][data-status="online"]').waitFor();
  await pushed.locator('#mode[data-mode="push"]').waitFor();
  // Beside the roster's client, a bare EventSource on the cookies the client set.
  await pushed.evaluate(() => {
    window.raw = { opens: 0, drops: 0, events: [] };
    const source = new EventSource('api/v1/users.presence.stream');
    source.onopen = () => window.raw.opens++;
    source.onerror = () => window.raw.drops++;
    source.onmessage = (e) => {
      const body = JSON.parse(e.data);
      window.raw.events.push({ opens: window.raw.opens, id: e.lastEventId, full: body.full,
        users: body.users.map((u) => u._id + ':' + u.status), at: Date.now() });
    };
    window.rawSource = source;
  });
  await eventually('the bare stream to open', () => pushed.evaluate(() => window.raw.events.length > 0), 10_000);
  const t2 = Date.now();
  await push.status('alice', 'away');
  await pushed.locator('tr[data-id="alice"][data-status="away"]').waitFor({ timeout: 10_000 });
  const rawSaw = await eventually('the bare stream to see the change', () =>
    pushed.evaluate(() => window.raw.events.find((e) => e.users.includes('alice:away'))), 10_000);
  console.log(`  pushed after ${rawSaw.at - t2} ms (the issue asks within a second; not asserted)`);
  step('the server ends the stream; a change made while the browser is away arrives when it resumes with Last-Event-ID');
  const opens = await pushed.evaluate(() => window.raw.opens);
  await eventually('the server to end the bare stream', () => pushed.evaluate(() => window.raw.drops > 0), 10_000);
  // The browser waits the stream's `retry` (2 s) before reconnecting: the change
  // is made in that gap, and must come with the resumed stream.
  await push.status('alice', 'busy');
  assert.equal(await pushed.evaluate(() => window.rawSource.readyState), 0,
    'the change was made while the stream was away (EventSource.CONNECTING)');
  await eventually('the bare stream to reconnect', () => pushed.evaluate((n) => window.raw.opens > n, opens), 10_000);
  await pushed.locator('tr[data-id="alice"][data-status="busy"]').waitFor({ timeout: 10_000 });
  const afterDrop = await eventually('the change after the reconnect', () =>
    pushed.evaluate(() => window.raw.events.find((e) => e.users.includes('alice:busy'))), 10_000);
  assert.ok(afterDrop.opens >= 2, JSON.stringify(afterDrop));
  // Resumed, not started over: every answer after a reconnect is a delta.
  const events = await pushed.evaluate(() => window.raw.events);
  assert.deepEqual(events.filter((e) => e.full).map((e) => e.opens), [1], JSON.stringify(events));
  assert.equal(await pushed.locator('#mode').textContent(), 'push');
  await pushed.evaluate(() => window.rawSource.close());
  await pushed.close();

  step('a server without the stream: the roster falls back to polling');
  const pollUrl = await startPresenced([], {
    PRESENCED_UI_ROSTER: 'true', PRESENCED_INGEST_TOKEN: 'poll-test', PRESENCED_STREAM_MAX_STREAMS: '0',
  });
  const polled = ingest(pollUrl, 'poll-test');
  await polled.user('viewer');
  await polled.token('viewer', 'viewer-token');
  await polled.user('bob');
  await polled.connect('bob', 'online');
  const fallback = await browser.newPage();
  await fallback.goto(`${pollUrl}/#userId=viewer&authToken=viewer-token`);
  await fallback.locator('tr[data-id="bob"][data-status="online"]').waitFor();
  await fallback.locator('#mode[data-mode="polling"]').waitFor();
  await polled.status('bob', 'away');
  await fallback.locator('tr[data-id="bob"][data-status="away"]').waitFor({ timeout: 10_000 });
  assert.match(await fallback.locator('#last-poll').textContent(), /^last poll /);
  await fallback.close();

  assert.deepEqual(pageErrors, [], 'no page errors and no console errors (CSP included)');
  await cleanup();
  step('PASS: roster, cross-origin polling, refusals, push and its fallback');
  process.exit(0);
} catch (e) {
  console.error('FAIL:', e);
  await cleanup();
  process.exit(1);
}
