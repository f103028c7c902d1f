// Load-generator driver for the HTTP + Socket.IO systems of bench/e2e.sh (switchboard gateway
// and the seeds' Node design): one socket.io-client per user (WebSocket transport, no
// reconnection: a dropped socket is a failure, not something to hide), and one keep-alive
// undici Pool for the POSTs. submit(user) POSTs a job as that user and resolves when the
// user's socket receives `rebalance:done` for the returned jobId; it rejects on a non-202,
// on `rebalance:error`, or when the user's socket drops. answered() is called when the 202
// has been read.
'use strict';
const { Pool } = require('undici');
const { io } = require('socket.io-client');

const BODY = JSON.stringify({ amount: 1000, priority: 'high' });

async function createDriver({ url, users, connections }) {
  const pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 60000 });
  const waiters = new Map(); // jobId -> {resolve, reject, user}
  const early = new Map();   // jobId -> outcome that arrived before the POST's answer

  const settle = (jobId, outcome) => {
    const w = waiters.get(jobId);
    if (!w) { early.set(jobId, outcome); return; }
    waiters.delete(jobId);
    if (outcome.ok) w.resolve(); else w.reject(new Error(outcome.error));
  };

  const connect = (user) => new Promise((resolve, reject) => {
    const socket = io(url, { transports: ['websocket'], auth: { token: user.token },
      forceNew: true, reconnection: false, timeout: 20000 });
    socket.on('rebalance:done', ({ jobId }) => settle(jobId, { ok: true }));
    socket.on('rebalance:error', ({ jobId, error }) => settle(jobId, { ok: false, error: `rebalance:error ${error}` }));
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (e) => reject(new Error(`socket.io connect: ${e.message}`)));
    socket.on('disconnect', (reason) => {
      if (user.closing) return;
      for (const [jobId, w] of waiters) if (w.user === user) settle(jobId, { ok: false, error: `socket dropped: ${reason}` });
    });
  });
  for (const user of users) user.socket = await connect(user);

  return {
    name: 'http+socket.io',
    async submit(user, answered = () => {}) {
      const res = await pool.request({ path: '/api/v1/agent/rebalance', method: 'POST', body: BODY,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` } });
      const text = await res.body.text();
      if (res.statusCode !== 202) throw new Error(`POST answered ${res.statusCode}: ${text.slice(0, 200)}`);
      const { jobId } = JSON.parse(text);
      answered();
      return new Promise((resolve, reject) => {
        const got = early.get(jobId);
        if (got) { early.delete(jobId); return got.ok ? resolve() : reject(new Error(got.error)); }
        waiters.set(jobId, { resolve, reject, user });
      });
    },
    pending: () => waiters.size,
    async close() {
      for (const user of users) { user.closing = true; user.socket.close(); }
      await pool.close();
    },
  };
}

module.exports = { createDriver };
