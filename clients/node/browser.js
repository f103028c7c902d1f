// Browser side (seed 001's RebalanceManager): create a job over HTTP and follow it over
// Socket.IO, with the HTTP polling fallback. Works with the official socket.io-client v4 in a
// browser (bundled) or in Node; uses fetch. Nothing here needs Redis.
//
//   const tracker = new JobTracker({ url: 'http://localhost:3001', token, type: 'rebalance' });
//   const jobId = await tracker.create({ amount: 1000, priority: 'high' });
//   const record = await tracker.follow(jobId, { onStatus: (s) => render(s) });
//
// follow() resolves with the final record (status done, error or cancelled) as soon as either
// path sees it: the socket's `{type}:done|error|cancelled` event for the job (then the record
// is fetched once), or GET /api/v1/agent/{type}/{jobId} every pollMs (2 s, as the seed's
// pollStatus). It rejects after timeoutMs (5 minutes, the seed's advice). onStatus sees the
// final step exactly once, from the socket or, when the job ended before the socket told it
// (or without any status message), from the record the GET found.
'use strict';

const FINAL = ['done', 'error', 'cancelled'];
const STEPS = ['created', 'processing', ...FINAL];

function loadIo() {
  if (typeof globalThis.io === 'function') return globalThis.io; // <script src=socket.io.js>
  return require('socket.io-client').io; // eslint-disable-line global-require
}

class JobTracker {
  // opts: { url, token, type = 'rebalance', socket (an existing one), io, fetch }
  constructor({ url, token, type = 'rebalance', socket, io, fetch: f } = {}) {
    this.url = url.replace(/\/$/, '');
    this.token = token;
    this.type = type;
    this.fetch = f || globalThis.fetch.bind(globalThis);
    this.socket = socket || (io || loadIo())(this.url, { auth: { token } });
  }

  headers(extra = {}) { return { authorization: `Bearer ${this.token}`, ...extra }; }

  // POST /api/v1/agent/{type}: resolves to the job id (rejects with the gateway's message).
  async create(payload) {
    const res = await this.fetch(`${this.url}/api/v1/agent/${this.type}`, { method: 'POST',
      headers: this.headers({ 'content-type': 'application/json' }), body: JSON.stringify(payload) });
    const body = await res.json();
    if (res.status !== 202) throw Object.assign(new Error(body.message || `HTTP ${res.status}`), { status: res.status, body });
    return body.jobId;
  }

  // GET the record (null on 404).
  async record(jobId) {
    const res = await this.fetch(`${this.url}/api/v1/agent/${this.type}/${encodeURIComponent(jobId)}`,
      { headers: this.headers() });
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    return res.json();
  }

  follow(jobId, { onStatus, pollMs = 2000, timeoutMs = 300000 } = {}) {
    return new Promise((resolve, reject) => {
      let over = false;
      let timer = null;
      let told = false; // onStatus has seen a final step (else a final record found by a GET is told)
      const listeners = [];
      const end = (err, rec) => {
        if (over) return;
        over = true;
        clearTimeout(timer);
        clearTimeout(deadline);
        for (const [ev, fn] of listeners) this.socket.off(ev, fn);
        if (err) reject(err); else resolve(rec);
      };
      const check = async () => {
        try {
          const rec = await this.record(jobId);
          if (over) return;
          if (rec && FINAL.includes(rec.status)) {
            if (onStatus && !told) {
              told = true;
              onStatus({ jobId, status: rec.status, result: rec.result, error: rec.error,
                details: rec.details, attempts: rec.attempts, timestamp: rec.updatedAt });
            }
            return end(null, rec);
          }
        } catch { /* the gateway is away: the next poll tries again */ }
        if (!over) timer = setTimeout(check, pollMs);
      };
      for (const step of STEPS) {
        const ev = `${this.type}:${step}`;
        const fn = (msg) => {
          if (!msg || msg.jobId !== jobId || over) return;
          if (FINAL.includes(step)) told = true;
          if (onStatus) onStatus({ status: step, ...msg });
          if (FINAL.includes(step)) { clearTimeout(timer); check(); }
        };
        listeners.push([ev, fn]);
        this.socket.on(ev, fn);
      }
      const deadline = setTimeout(() => end(new Error(`timeout: job ${jobId} not finished after ${timeoutMs} ms`)), timeoutMs);
      check();
    });
  }

  // create + follow, as the seed's createAndMonitor.
  async createAndFollow(payload, opts) { return this.follow(await this.create(payload), opts); }

  close() { this.socket.close(); }
}

module.exports = { JobTracker, FINAL };
