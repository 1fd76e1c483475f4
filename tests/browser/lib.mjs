// Helpers shared by the Node-side tests: bounded waits, the internal API, and a
// whole-script watchdog. Every wait has a deadline; nothing sleeps and hopes.

import assert from 'node:assert/strict';

/** Returns the environment variable `name`, failing loudly when it is unset. */
export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run this through cargo test (tests/api/browser.rs)`);
    process.exit(2);
  }
  return value;
}

/** Ends the process with status 1 if the script runs longer than `ms`, after `cleanup`. */
export function watchdog(ms, cleanup = async () => {}) {
  const timer = setTimeout(async () => {
    console.error(`FAIL: the script did not finish within ${ms} ms`);
    try {
      await cleanup();
    } finally {
      process.exit(1);
    }
  }, ms);
  timer.unref();
}

/** Logs a step, so a failure's output says how far the script got. */
export function step(text) {
  console.log(`[${new Date().toISOString()}] ${text}`);
}

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` (sync or async) every 20 ms until it returns a truthy value, and
 * returns that value; throws naming `what` after `timeoutMs`, with the last error
 * `check` threw, if any.
 */
export async function eventually(what, check, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
      last = undefined;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}` + (last ? `: ${last.message}` : ''));
    }
    await delay(20);
  }
}

/** `fetch` that gives up after `ms`. */
export function fetchWithin(url, init = {}, ms = 5000) {
  return fetch(url, { ...init, signal: AbortSignal.timeout(ms) });
}

/** The internal (ingest) API of the presenced at `base`. */
export function ingest(base, token) {
  const call = async (method, path, body) => {
    const res = await fetchWithin(`${base}/internal/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = await res.json();
    assert.equal(res.status, 200, `${method} ${path}: ${JSON.stringify(answer)}`);
    assert.equal(answer.success, true, `${method} ${path}: ${JSON.stringify(answer)}`);
    return answer;
  };
  return {
    call,
    user: (id, profile = {}) => call('PUT', `/users/${id}`, { username: id, ...profile }),
    deleteUser: (id) => call('DELETE', `/users/${id}`),
    token: (id, token) => call('POST', `/users/${id}/tokens`, { token }),
    connect: (id, status) => call('PUT', `/connections/c-${id}`, { userId: id, status }),
    disconnect: (id) => call('DELETE', `/connections/c-${id}`),
    status: (id, status, statusText) => call('PUT', `/users/${id}/status`, statusText === undefined ? { status } : { status, statusText }),
  };
}

/** GET users.presence at `base` as `login`, with no parameters: the full state. */
export async function snapshot(base, login) {
  const res = await fetchWithin(`${base}/api/v1/users.presence`, {
    headers: { 'X-User-Id': login.userId, 'X-Auth-Token': login.authToken },
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.full, true);
  return sortById(body.users);
}

export function sortById(users) {
  return [...users].sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
}
