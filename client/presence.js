/**
 * presenced client: keeps a live map of who is online, pushed over the change
 * stream `GET /api/v1/users.presence.stream` where it can, else by polling
 * `GET /api/v1/users.presence`. No dependencies, no build step.
 *
 * Load it either way (presenced serves both from this one file):
 *
 *   <script src="https://presence.example.com/client/presence.js"></script>
 *   <script> const client = new PresenceClient({ ... }); </script>
 *
 *   import { PresenceClient } from 'https://presence.example.com/client/presence.mjs';
 *
 * The classic script sets `globalThis.PresenceClient`; `presence.mjs` is this file
 * plus `export { PresenceClient }; export default PresenceClient;`. A page on another
 * origin needs that origin in presenced's `cors.allowed_origins` to poll (and to
 * import the module; the classic script loads from anywhere).
 *
 *   const client = new PresenceClient({
 *     baseUrl: 'https://presence.example.com', userId, authToken, intervalMs: 5000,
 *   });
 *   client.addEventListener('change', (e) => render(client.users(), e.detail.users));
 *   client.addEventListener('poll', (e) => console.log(e.detail.latencyMs, e.detail.notModified));
 *   client.start();
 *
 * How it polls: one full snapshot, then `?since=<cursor>` for the changes after it,
 * revalidated with `If-None-Match` so an unchanged answer is an empty 304. A
 * `full: true` answer (the server could not prove a delta complete, or restarted)
 * replaces the map. Users whose status is `offline` are dropped from the map. Errors,
 * 429 and 503 back off exponentially (at least `Retry-After` when the server sends
 * one). While the page is hidden it does not poll; it polls at once when shown again.
 *
 * Push (docs/streaming.md): in a browser with `EventSource`, on presenced's own origin
 * (the stream authenticates by the `rc_uid`/`rc_token` cookies, which the client sets,
 * as an `EventSource` cannot send headers), the client opens the stream instead, from
 * its cursor; the browser's own reconnect resumes it by `Last-Event-ID`. While hidden
 * the stream is closed and reopened from the cursor when shown. If the server refuses
 * the stream (off, over its limits, not offered), drops it as too slow, or it fails
 * several times in a row, the client polls instead until the next start(). `mode` says
 * which it does ('push' or 'polling'); a `mode` event tells when it changes, and a
 * `push` event comes with every answer the stream brings.
 */
var PresenceClient = (function () {
  'use strict';

  /**
   * A user as presenced sends it: `_id` plus whichever fields are set.
   * @typedef {Object} PresenceUser
   * @property {string} _id
   * @property {string} [username]
   * @property {string} [name]
   * @property {'online'|'away'|'busy'|'offline'} status
   * @property {number} [utcOffset] hours from UTC, may be fractional
   * @property {string} [avatarETag]
   * @property {string} [statusText]
   */

  /**
   * @typedef {Object} PresenceClientOptions
   * @property {string} userId sent as `X-User-Id`
   * @property {string} authToken sent as `X-Auth-Token`
   * @property {string} [baseUrl] presenced's origin (and path prefix, if proxied);
   *   '' (the default) means this page's origin
   * @property {number} [intervalMs=5000] wait between the end of a poll and the next
   * @property {number} [maxBackoffMs=60000] longest wait after repeated failures
   * @property {number} [timeoutMs=30000] a request taking longer is aborted and failed
   * @property {boolean} [push=true] use the change stream when the browser and origin allow
   */

  /**
   * `detail` of a `change` event: the users of the answer that changed the map
   * (offline ones included: they were just removed), and whether the map was replaced.
   * @typedef {Object} ChangeDetail
   * @property {PresenceUser[]} users
   * @property {boolean} full
   */

  /**
   * `detail` of a `poll` event, one per request.
   * @typedef {Object} PollDetail
   * @property {boolean} ok the answer was used (200 or 304)
   * @property {number} status HTTP status, 0 when no answer came (network error, timeout)
   * @property {boolean} notModified the answer was a 304
   * @property {number} latencyMs from sending the request to having read its answer
   * @property {boolean} full the answer replaced the map
   * @property {number} changed how many users the answer listed
   * @property {number} nextPollMs how long until the next poll
   * @property {string} [error] what went wrong, when not ok
   */

  const MAX_RETRY_AFTER_MS = 3600 * 1000;
  /** Stream errors in a row, without an answer in between, before falling back to polling. */
  const STREAM_FAILURES = 3;

  /** @returns {boolean} whether a document exists and is hidden */
  function isHidden() {
    return typeof document !== 'undefined' && document.visibilityState === 'hidden';
  }

  function event(type, detail) {
    // Node 18 has EventTarget but no global CustomEvent.
    if (typeof CustomEvent === 'function') return new CustomEvent(type, { detail: detail });
    const e = new Event(type);
    Object.defineProperty(e, 'detail', { value: detail });
    return e;
  }

  /**
   * @param {string|null} value a `Retry-After` header: seconds, or an HTTP date
   * @returns {number} milliseconds to wait, 0 when absent or unreadable
   */
  function retryAfterMs(value) {
    if (!value) return 0;
    const ms = /^\s*\d+\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - Date.now();
    return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS) : 0;
  }

  /**
   * Polls presenced and keeps the users who are not offline in a map.
   *
   * Events: `change` ({@link ChangeDetail}) whenever the map changed, and `poll`
   * ({@link PollDetail}) after every request, successful or not.
   */
  class PresenceClient extends EventTarget {
    /** @type {Map<string, PresenceUser>} */
    #users = new Map();
    /** @type {string|null} where the next delta starts; null: ask for a snapshot */
    #cursor = null;
    /** @type {{url: string, etag: string}|null} the last answer's tag and the URL it answers */
    #tag = null;
    #failures = 0;
    #running = false;
    /** Bumped by start() and stop(), so a poll of an earlier run changes nothing. */
    #generation = 0;
    #timer = null;
    #inFlight = null;
    #onVisibility = null;
    /** @type {'push'|'polling'|null} */
    #mode = null;
    /** @type {EventSource|null} */
    #source = null;
    /** Whether this run pushes (until it falls back to polling). */
    #pushing = false;
    #streamFailures = 0;

    /** @param {PresenceClientOptions} options */
    constructor(options) {
      super();
      const o = options || {};
      if (typeof o.userId !== 'string' || typeof o.authToken !== 'string') {
        throw new TypeError('PresenceClient: userId and authToken (strings) are required');
      }
      this.userId = o.userId;
      this.authToken = o.authToken;
      this.baseUrl = String(o.baseUrl || '').replace(/\/+$/, '');
      this.intervalMs = positive(o.intervalMs, 5000);
      this.maxBackoffMs = Math.max(positive(o.maxBackoffMs, 60000), this.intervalMs);
      this.timeoutMs = positive(o.timeoutMs, 30000);
      this.push = o.push !== false;
    }

    /** @returns {'push'|'polling'|null} how the client follows presence; null before its first answer */
    get mode() {
      return this.#mode;
    }

    /** @returns {boolean} whether the client is polling (or paused while hidden) */
    get running() {
      return this.#running;
    }

    /** @returns {string|null} the cursor the next delta is asked from */
    get cursor() {
      return this.#cursor;
    }

    /** @returns {Map<string, PresenceUser>} a copy of the users who are not offline, by `_id` */
    users() {
      return new Map(this.#users);
    }

    /**
     * @param {string} id
     * @returns {PresenceUser|undefined} the user, if not offline
     */
    get(id) {
      return this.#users.get(id);
    }

    /** Starts polling: a snapshot at once, then deltas. Does nothing if running. */
    start() {
      if (this.#running) return this;
      this.#running = true;
      const generation = ++this.#generation;
      if (typeof document !== 'undefined' && document.addEventListener) {
        this.#onVisibility = () => {
          if (this.#pushing) {
            if (isHidden()) this.#closeStream();
            else if (this.#source === null) this.#openStream(generation);
          } else if (!isHidden() && this.#timer === null && this.#inFlight === null) {
            this.#tick(generation);
          }
        };
        document.addEventListener('visibilitychange', this.#onVisibility);
      }
      this.#pushing = this.#canPush();
      if (this.#pushing) this.#openStream(generation);
      else this.#tick(generation);
      return this;
    }

    /** Stops polling and aborts a request in flight. The map is kept; start() resumes. */
    stop() {
      this.#running = false;
      this.#generation++;
      this.#pushing = false;
      this.#closeStream();
      clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#inFlight) this.#inFlight.abort();
      this.#inFlight = null;
      if (this.#onVisibility) document.removeEventListener('visibilitychange', this.#onVisibility);
      this.#onVisibility = null;
      return this;
    }

    /** @returns {boolean} whether this browser and page can follow the stream */
    #canPush() {
      if (!this.push || typeof EventSource !== 'function' || typeof location === 'undefined' ||
          typeof document === 'undefined') return false;
      try {
        return new URL(this.baseUrl + '/', location.href).origin === location.origin;
      } catch (e) {
        return false;
      }
    }

    #setMode(mode) {
      if (this.#mode === mode) return;
      this.#mode = mode;
      this.dispatchEvent(event('mode', { mode: mode }));
    }

    #closeStream() {
      if (this.#source) this.#source.close();
      this.#source = null;
    }

    /** Opens the stream from the cursor; its answers apply as polls' do. */
    #openStream(generation) {
      if (generation !== this.#generation || isHidden()) return;
      // EventSource sends no headers, but cookies: the ones Rocket.Chat's web client sets.
      const path = new URL(this.baseUrl + '/', location.href).pathname;
      for (const [name, value] of [['rc_uid', this.userId], ['rc_token', this.authToken]]) {
        document.cookie = name + '=' + encodeURIComponent(value) + '; path=' + path + '; SameSite=Strict';
      }
      let url = this.baseUrl + '/api/v1/users.presence.stream';
      if (this.#cursor !== null) url += '?since=' + encodeURIComponent(this.#cursor);
      const source = new EventSource(url);
      this.#source = source;
      source.onmessage = (e) => {
        if (this.#source !== source) return;
        let body = null;
        try {
          body = JSON.parse(e.data);
        } catch (err) {
          // Checked below.
        }
        if (!body || body.success !== true || !Array.isArray(body.users) || typeof body.full !== 'boolean') {
          this.#fallBack(generation, 'unexpected stream event: ' + String(e.data).slice(0, 120));
          return;
        }
        this.#streamFailures = 0;
        this.#setMode('push');
        const detail = { full: false, changed: 0 };
        this.#apply(body, detail);
        this.dispatchEvent(event('push', { full: detail.full, changed: detail.changed, cursor: this.#cursor }));
      };
      source.addEventListener('bye', (e) => {
        let reason = '';
        try {
          reason = JSON.parse(e.data).reason;
        } catch (err) {
          // No reason: treat as any other end.
        }
        // Otherwise the browser reconnects by itself, resuming by Last-Event-ID.
        if (reason === 'too-slow') this.#fallBack(generation, 'the server dropped the stream as too slow');
      });
      source.onerror = () => {
        if (this.#source !== source) return;
        // CLOSED: refused (an error status, or not a stream at all); the browser gives up.
        if (source.readyState === EventSource.CLOSED) {
          this.#fallBack(generation, 'the stream was refused');
        } else if (++this.#streamFailures >= STREAM_FAILURES) {
          this.#fallBack(generation, 'the stream failed ' + this.#streamFailures + ' times in a row');
        }
      };
    }

    /** Stops pushing and polls from the cursor, until the next start(). */
    #fallBack(generation, why) {
      if (generation !== this.#generation || !this.#pushing) return;
      this.#pushing = false;
      this.#closeStream();
      this.#streamFailures = 0;
      this.dispatchEvent(event('fallback', { reason: why }));
      this.#tick(generation);
    }

    async #tick(generation) {
      this.#timer = null;
      // Hidden: stop here; the visibility listener polls again when the page is shown.
      if (generation !== this.#generation || isHidden()) return;
      this.#setMode('polling');
      const wait = await this.#poll(generation);
      if (generation !== this.#generation) return;
      this.#timer = setTimeout(() => this.#tick(generation), wait);
    }

    /** Sends one request, applies its answer; returns how long to wait before the next. */
    async #poll(generation) {
      let url = this.baseUrl + '/api/v1/users.presence';
      if (this.#cursor !== null) url += '?since=' + encodeURIComponent(this.#cursor);
      const headers = { 'X-User-Id': this.userId, 'X-Auth-Token': this.authToken };
      // A tag only revalidates the question it answered; after a change the URL moves on.
      if (this.#tag && this.#tag.url === url) headers['If-None-Match'] = this.#tag.etag;
      const controller = new AbortController();
      this.#inFlight = controller;
      const timeout = setTimeout(() => controller.abort(), this.timeoutMs);
      const started = Date.now();
      const detail = { ok: false, status: 0, notModified: false, latencyMs: 0, full: false, changed: 0 };
      let serverWait = 0;
      try {
        const res = await fetch(url, { headers: headers, cache: 'no-store', signal: controller.signal });
        detail.status = res.status;
        if (res.status === 304) {
          detail.ok = detail.notModified = true;
        } else if (res.status === 200) {
          const body = await res.json();
          if (generation !== this.#generation) return 0;
          if (!body || body.success !== true || !Array.isArray(body.users) || typeof body.full !== 'boolean') {
            throw new Error('unexpected answer: ' + String(JSON.stringify(body)).slice(0, 120));
          }
          const etag = res.headers.get('ETag');
          this.#tag = etag ? { url: url, etag: etag } : null;
          this.#apply(body, detail);
          detail.ok = true;
        } else if (res.status === 400 && this.#cursor !== null) {
          // The cursor was refused: start over from a snapshot, at once.
          this.#cursor = null;
          this.#tag = null;
          detail.error = 'cursor refused (400); resynchronizing';
          detail.nextPollMs = 0;
        } else {
          serverWait = retryAfterMs(res.headers.get('Retry-After'));
          detail.error = 'HTTP ' + res.status;
        }
      } catch (e) {
        detail.error = controller.signal.aborted ? 'timed out after ' + this.timeoutMs + ' ms' : String(e && e.message || e);
      } finally {
        clearTimeout(timeout);
        if (this.#inFlight === controller) this.#inFlight = null;
      }
      if (generation !== this.#generation) return 0;
      detail.latencyMs = Date.now() - started;
      if (detail.ok) {
        this.#failures = 0;
        detail.nextPollMs = this.intervalMs;
      } else if (detail.nextPollMs === undefined) {
        this.#failures++;
        const backoff = Math.min(this.maxBackoffMs, this.intervalMs * Math.pow(2, this.#failures));
        // Up to 20% more, so clients that failed together do not all come back together.
        detail.nextPollMs = Math.round(Math.max(backoff, serverWait) * (1 + Math.random() * 0.2));
      }
      this.dispatchEvent(event('poll', detail));
      return detail.nextPollMs;
    }

    /** Applies a 200 answer to the map; emits `change` if it listed anyone or replaced the map. */
    #apply(body, detail) {
      if (body.full) {
        const next = new Map();
        for (const u of body.users) if (u.status !== 'offline') next.set(u._id, u);
        this.#users = next;
      } else {
        for (const v of body.users) {
          if (v.status === 'offline') this.#users.delete(v._id);
          else this.#users.set(v._id, v);
        }
      }
      // Without a cursor (a server that does not send one), every poll is a snapshot.
      this.#cursor = typeof body.cursor === 'string' ? body.cursor : null;
      detail.full = body.full;
      detail.changed = body.users.length;
      if (body.full || body.users.length > 0) {
        this.dispatchEvent(event('change', { users: body.users, full: body.full }));
      }
    }
  }

  function positive(value, fallback) {
    return typeof value === 'number' && value > 0 ? value : fallback;
  }

  return PresenceClient;
})();

globalThis.PresenceClient = PresenceClient;
