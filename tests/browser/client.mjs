// The polling client (client/presence.js, loaded as presenced serves it at
// /client/presence.mjs) against two real presenced servers, in Node.
//
// The client polls through a small forwarding proxy on 127.0.0.1: it relays to the
// server it points at and, when told, fails one request (503 with Retry-After, 429,
// a dropped connection) or garbles its cursor, and it can be re-pointed at the second
// server, whose epoch differs, as a restarted sidecar behind the same address would.
//
// Environment (set by tests/api/browser.rs): PRESENCED_A, PRESENCED_B (base URLs),
// PRESENCED_INGEST_TOKEN (the ingest token of both).

import assert from 'node:assert/strict';
import http from 'node:http';
import { delay, env, eventually, fetchWithin, ingest, snapshot, sortById, step, watchdog } from './lib.mjs';

const A = env('PRESENCED_A');
const B = env('PRESENCED_B');
const TOKEN = env('PRESENCED_INGEST_TOKEN');
const INTERVAL = 100;

const cleanups = [];
async function cleanup() {
  for (const c of cleanups.reverse()) await c();
}
watchdog(90_000, cleanup);

/** Forwards to `upstream`, applying the queued faults one request each. */
async function startProxy(upstream) {
  const proxy = { upstream, faults: [], requests: [] };
  const server = http.createServer(async (req, res) => {
    const fault = proxy.faults.shift();
    proxy.requests.push({ url: req.url, at: Date.now(), fault: fault && fault.kind });
    try {
      if (fault && fault.kind === 'status') {
        res.writeHead(fault.status, fault.retryAfter ? { 'Retry-After': String(fault.retryAfter) } : {});
        res.end(fault.body);
        return;
      }
      if (fault && fault.kind === 'hang') {
        // Never answers; the client's timeout has to give up on it.
        return;
      }
      if (fault && fault.kind === 'drop') {
        req.socket.destroy();
        return;
      }
      const path = fault && fault.kind === 'garble' ? req.url.replace(/since=[^&]*/, 'since=not-a-cursor') : req.url;
      const headers = {};
      for (const name of ['x-user-id', 'x-auth-token', 'if-none-match']) {
        if (req.headers[name]) headers[name] = req.headers[name];
      }
      const answer = await fetchWithin(proxy.upstream + path, { headers });
      const out = {};
      for (const name of ['content-type', 'etag', 'cache-control', 'retry-after']) {
        const value = answer.headers.get(name);
        if (value) out[name] = value;
      }
      const body = Buffer.from(await answer.arrayBuffer());
      res.writeHead(answer.status, out);
      res.end(answer.status === 304 ? undefined : body);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  proxy.url = `http://127.0.0.1:${server.address().port}`;
  proxy.close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return proxy;
}

/** Resolves with the client's users once they equal a fresh snapshot of `base`. */
async function converges(client, base, login, what) {
  let want;
  await eventually(`the client's map to equal a fresh snapshot (${what})`, async () => {
    want = await snapshot(base, login);
    assert.deepEqual(sortById(client.users().values()), want);
    return true;
  });
  return want;
}

function ids(users) {
  return sortById(users).map((u) => u._id);
}

step(`loading the client from ${A}/client/presence.mjs`);
const served = await fetchWithin(`${A}/client/presence.mjs`);
assert.equal(served.status, 200);
assert.match(served.headers.get('content-type'), /^text\/javascript/);
const source = await served.text();
const { PresenceClient } = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
assert.equal(typeof PresenceClient, 'function');
assert.equal(globalThis.PresenceClient, PresenceClient, 'the module also sets globalThis.PresenceClient');
assert.throws(() => new PresenceClient({ baseUrl: A }), /userId and authToken/);

const a = ingest(A, TOKEN);
const b = ingest(B, TOKEN);
const caller = { userId: 'caller', authToken: 'caller-token' };
for (const server of [a, b]) {
  await server.user('caller');
  await server.token('caller', caller.authToken);
}
for (const id of ['u1', 'u2', 'u3', 'u4', 'u5']) await a.user(id, { name: `User ${id}`, utcOffset: 1.5 });
await a.connect('u1', 'online');
await a.connect('u2', 'online');
await a.connect('u3', 'away');

const proxy = await startProxy(A);
cleanups.push(proxy.close);
const TIMEOUT = 1000;
const client = new PresenceClient({ baseUrl: proxy.url + '/', ...caller, intervalMs: INTERVAL, maxBackoffMs: 2000, timeoutMs: TIMEOUT });
const changes = [];
const polls = [];
client.addEventListener('change', (e) => changes.push(e.detail));
client.addEventListener('poll', (e) => polls.push(e.detail));
cleanups.push(async () => client.stop());

step('start: the first answer is a full snapshot');
client.start();
assert.equal(client.running, true);
await converges(client, A, caller, 'first snapshot');
assert.equal(changes[0].full, true);
assert.deepEqual(ids(changes[0].users), ['u1', 'u2', 'u3']);
assert.equal(proxy.requests[0].url, '/api/v1/users.presence', 'the first request has no cursor');

step('idle: deltas are revalidated into 304s');
await eventually('a 304', () => polls.some((p) => p.notModified));
const afterFirst = proxy.requests.slice(1);
assert.ok(afterFirst.length > 0 && afterFirst.every((r) => /^\/api\/v1\/users\.presence\?since=/.test(r.url)), 'later polls ask since a cursor');

step('a sequence of writes: the deltas keep the map equal to a fresh snapshot');
const rounds = [
  ['status and status text', async () => {
    await a.status('u3', 'busy', 'in a meeting');
    await a.connect('u2', 'away');
  }],
  ['a new user comes online, another goes invisible', async () => {
    await a.user('u6', { name: 'Six' });
    await a.connect('u6', 'online');
    await a.status('u1', 'offline');
  }],
  ['profile changes and a disconnect', async () => {
    await a.user('u3', { name: 'Three, renamed', utcOffset: -3 });
    await a.status('u3', 'busy');
    await a.disconnect('u2');
  }],
  ['a deletion and a reconnect', async () => {
    await a.deleteUser('u6');
    await a.connect('u4', 'online');
    await a.status('u1', 'online');
  }],
  ['a batch', async () => {
    await a.call('POST', '/batch', { ops: [
      { op: 'putUser', userId: 'u7', username: 'u7' },
      { op: 'putConnection', connectionId: 'c-u7', userId: 'u7', status: 'away' },
      { op: 'setStatus', userId: 'u4', status: 'away', statusText: 'lunch' },
      { op: 'deleteConnection', connectionId: 'c-u1' },
    ] });
  }],
];
for (const [what, write] of rounds) {
  const seen = changes.length;
  await write();
  await converges(client, A, caller, what);
  assert.ok(changes.length > seen, `a change event for: ${what}`);
  assert.ok(changes.slice(seen).every((c) => !c.full), `deltas, not snapshots, for: ${what}`);
}
// The deltas told who went offline, and the map dropped them.
const offline = changes.flatMap((c) => c.users).filter((u) => u.status === 'offline').map((u) => u._id);
for (const id of ['u1', 'u2', 'u6']) assert.ok(offline.includes(id), `${id} went offline in a delta`);
assert.equal(client.get('u6'), undefined);
assert.equal(client.get('u2'), undefined);
assert.equal(client.get('u3').name, 'Three, renamed');
assert.ok(polls.filter((p) => p.ok).slice(1).every((p) => !p.full), 'no snapshot after the first while the cursor holds');

/** Queues `fault`, waits for the request it hits and the one after; returns both. */
async function faulted(fault) {
  const before = proxy.requests.length;
  proxy.faults.push(fault);
  const [hit, next] = await eventually(`the request after a ${fault.kind} fault`, () => {
    const i = proxy.requests.findIndex((r, k) => k >= before && r.fault === fault.kind);
    return i >= 0 && proxy.requests[i + 1] ? [proxy.requests[i], proxy.requests[i + 1]] : null;
  }, 10_000);
  return { hit, next, gap: next.at - hit.at };
}

step('503 with Retry-After: 1 waits at least a second');
let f = await faulted({ kind: 'status', status: 503, retryAfter: 1 });
assert.ok(f.gap >= 1000 - 5, `retried after ${f.gap} ms`);
const failedPoll = polls.find((p) => p.status === 503);
assert.equal(failedPoll.ok, false);
assert.ok(failedPoll.nextPollMs >= 1000, JSON.stringify(failedPoll));

step('Retry-After as an HTTP date is honoured too');
f = await faulted({ kind: 'status', status: 429, retryAfter: new Date(Date.now() + 2000).toUTCString() });
// The date has whole seconds, so up to one of the two is lost.
assert.ok(f.gap >= 900, `retried after ${f.gap} ms`);

step('an answer that is not a presence answer is an error, not an empty map');
const mapBefore = sortById(client.users().values());
f = await faulted({ kind: 'status', status: 200, body: '{"success":false}' });
assert.ok(f.gap >= 2 * INTERVAL - 5, `retried after ${f.gap} ms`);
const odd = polls.find((p) => p.status === 200 && !p.ok);
assert.match(odd.error, /unexpected answer/);
f = await faulted({ kind: 'status', status: 200, body: 'not json' });
assert.ok(polls.filter((p) => p.status === 200 && !p.ok).length >= 2);
assert.deepEqual(sortById(client.users().values()), mapBefore, 'the map is untouched');

step('a request that never answers times out and is retried');
f = await faulted({ kind: 'hang' });
assert.ok(f.gap >= TIMEOUT + 2 * INTERVAL - 5, `retried after ${f.gap} ms`);
assert.ok(polls.some((p) => p.status === 0 && /timed out after 1000 ms/.test(p.error)), 'the timeout is reported');

step('429 and dropped connections back off exponentially');
f = await faulted({ kind: 'status', status: 429 });
assert.ok(f.gap >= 2 * INTERVAL - 5, `first retry after ${f.gap} ms`);
const before = proxy.requests.length;
proxy.faults.push({ kind: 'drop' }, { kind: 'drop' }, { kind: 'drop' });
const drops = await eventually('three dropped requests and a retry', () => {
  const r = proxy.requests.slice(before);
  return r.length >= 4 ? r : null;
}, 10_000);
const gaps = [1, 2, 3].map((i) => drops[i].at - drops[i - 1].at);
assert.ok(gaps[0] >= 2 * INTERVAL - 5 && gaps[1] >= 4 * INTERVAL - 5 && gaps[2] >= 8 * INTERVAL - 5, `gaps ${gaps}`);
assert.ok(polls.some((p) => !p.ok && p.status === 0 && p.error), 'a network error is reported in a poll event');
await a.status('u5', 'busy');
await a.connect('u5', 'online');
await converges(client, A, caller, 'after recovering from errors');

step('a refused cursor (400) resynchronizes from a snapshot at once');
const seenChanges = changes.length;
f = await faulted({ kind: 'garble' });
assert.match(f.hit.url, /since=/);
assert.equal(f.next.url, '/api/v1/users.presence', 'the next request has no cursor');
const refused = polls.find((p) => p.status === 400);
assert.equal(refused.ok, false);
assert.equal(refused.nextPollMs, 0, 'the snapshot is asked for at once');
await eventually('a full resync', () => changes.slice(seenChanges).some((c) => c.full));
await converges(client, A, caller, 'after the resync');

step('a cursor of another epoch (the server behind the address restarted): full: true replaces the map');
await b.user('w1');
await b.connect('w1', 'online');
await b.user('w2');
await b.connect('w2', 'away');
const beforeSwitch = changes.length;
const switchedAt = proxy.requests.length;
proxy.upstream = B;
await converges(client, B, caller, 'after switching to the second server');
const resync = changes.slice(beforeSwitch).find((c) => c.full);
assert.ok(resync, 'the switch produced a full answer');
assert.deepEqual(ids(client.users().values()), ['w1', 'w2']);
assert.match(proxy.requests[switchedAt].url, /since=/, 'the first request to the second server carried the old cursor');
await b.status('w2', 'busy', 'deep work');
await converges(client, B, caller, 'deltas from the second server');

step('stop(): no more requests; start() resumes from the cursor');
client.stop();
assert.equal(client.running, false);
const stoppedAt = proxy.requests.length;
await delay(5 * INTERVAL);
assert.equal(proxy.requests.length, stoppedAt, 'no request after stop()');
await b.status('w1', 'away');
client.start();
await converges(client, B, caller, 'after a restart of the client');
assert.match(proxy.requests[stoppedAt].url, /since=/, 'the restarted client asked for a delta');
client.stop();

step('a wrong token: 401 is reported and backed off, the map stays empty');
const stranger = new PresenceClient({ baseUrl: A, userId: 'caller', authToken: 'wrong', intervalMs: 50 });
const strangerPolls = [];
stranger.addEventListener('poll', (e) => strangerPolls.push(e.detail));
stranger.start();
cleanups.push(async () => stranger.stop());
await eventually('three refused polls', () => strangerPolls.length >= 3);
stranger.stop();
assert.ok(strangerPolls.every((p) => p.status === 401 && !p.ok));
const waits = strangerPolls.slice(0, 3).map((p) => p.nextPollMs);
assert.ok(waits[0] >= 100 && waits[1] >= 200 && waits[2] >= 400, `waits ${waits}`);
assert.equal(stranger.users().size, 0);

await cleanup();
step('PASS: client deltas, resyncs and backoff');
process.exit(0);
