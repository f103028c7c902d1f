// Socket.IO delivery at the edges, against one real gateway on its own real Redis (this file
// stops and kills that Redis, so it shares it with no other test): large results replayed as
// states with resultUrl (a replay larger than the session's queue would drop the client into a
// reconnect loop), one live event larger than the queue limit, a replayed state never arriving after a newer
// live event of its job (replay on connect, and catch-up after a subscription gap, each with a
// large read in flight while the job finishes), the replay of a socket that re-authenticates
// on the same engine session, public keys as long as the HTTP API accepts, the close of a
// WebSocket whose client stopped reading, and the replay of a client that connected while
// Redis was stalled or down. Tests wait on events (log lines, received packets, the kernel's
// TCP table); a "nothing else arrived" check always follows a sentinel that must arrive after
// what it rules out.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');
const { recordingSocket, rawWs: rawWsAt } = require('./lib/sio');

const SECRET = 'e2e-sio-delivery-secret';
const BUDGET = 256 * 1024; // the replay's byte budget (replay.h SB_REPLAY_BUDGET)
let redis, rc, gw, base;
let seq = 0;
const sockets = new Set();

function user(pk = `DLV-${process.pid}-${++seq}`) {
  const token = jwt.sign({ sub: `u-${seq}`, publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, token };
}

// A socket.io-client socket recording every event, connect and disconnect.
function connect(token, opts = {}) {
  return recordingSocket(sockets, base, token, opts);
}

// A raw Engine.IO WebSocket (no client library): every text message is kept.
function rawWs(query = 'EIO=4&transport=websocket') {
  return rawWsAt(base, query);
}

const iso = (ms) => new Date(ms).toISOString();

// Stores job records for pk as the agents leave them (result and the rest after the state).
// jobs: [{id, status, updatedMs, ...extra}].
async function seed(pk, jobs) {
  const m = rc.multi();
  for (const j of jobs) {
    const { id, status, updatedMs, ...extra } = j;
    m.set(`agent:rebalance:job:${id}`, JSON.stringify({ jobId: id, type: 'rebalance', status,
      user: { publicKey: pk }, payload: {}, createdAt: iso(updatedMs - 1000),
      updatedAt: iso(updatedMs), ...extra }), 'EX', 3600);
    m.zadd(`agent:rebalance:user:${pk}`, updatedMs - 1000, id);
  }
  await m.exec();
}

// n job ids, oldest first, created at consecutive milliseconds before now.
function jobIds(n, tag) {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) =>
    `${now - 10000 + i}-${(tag * 0x100 + i).toString(16).padStart(8, '0')}`);
}

// The TCP state of the gateway's end of a loopback connection (from /proc/net/tcp): '01' is
// ESTABLISHED; null once the socket is gone.
function serverTcpState(serverPort, clientPort) {
  const hex = (p) => p.toString(16).toUpperCase().padStart(4, '0');
  const line = fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)
    .map((l) => l.trim().split(/\s+/))
    .find((f) => f[1] && f[1].endsWith(`:${hex(serverPort)}`) && f[2].endsWith(`:${hex(clientPort)}`));
  return line ? line[3] : null;
}

// Resolves with the first gateway log line after offset `from` matching re.
async function logLine(re, from, timeoutMs = 15000) {
  return waitFor(() => gw.output.slice(from).split('\n').find((l) => re.test(l)),
    { what: `gateway to log ${re}`, timeoutMs });
}

test.before(async () => {
  redis = await startRedis({ aof: true });
  rc = redis.client();
  const port = await freePort();
  gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance', RATE_LIMIT: '1000' },
  `gateway:${port}`);
  await gw.waitForOutput(/subscribed to agent:rebalance:events/);
  base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  if (gw && gw.exitCode === null) gw.kill('SIGKILL');
  rc.disconnect();
  await redis.stop();
});

// ---- the replay's byte budget ------------------------------------------------------------------

test('large results are replayed as states with resultUrl, all of them, and keep the client', async () => {
  const u = user();
  const ids = jobIds(45, 1);
  const now = Date.now();
  await seed(u.pk, ids.map((id, i) => ({ id, status: 'done', updatedMs: now - 60000 + i,
    result: { blob: 'r'.repeat(26000) } })));
  const s = connect(u.token);
  await s.connected$();
  // every state, oldest first, without its 26 KB result but with where to read it
  const replayed = await waitFor(() => {
    const r = s.events.filter((e) => e.name === 'rebalance:done' && e.data.replay);
    return r.length === ids.length ? r : null;
  }, { what: 'every job replayed' });
  assert.deepStrictEqual(replayed.map((e) => e.data.jobId), ids);
  for (const e of replayed) {
    assert.strictEqual(e.data.result, undefined);
    assert.strictEqual(e.data.resultUrl, `/api/v1/agent/rebalance/${e.data.jobId}`);
  }
  const bytes = replayed.reduce((n, e) => n + JSON.stringify(['rebalance:done', e.data]).length + 2, 0);
  assert.ok(bytes <= BUDGET, `replayed ${bytes} bytes`);
  // the result is there over HTTP
  const rec = await (await fetch(`${base}${replayed[0].data.resultUrl}`,
    { headers: { authorization: `Bearer ${u.token}` } })).json();
  assert.strictEqual((rec.job || rec).result.blob.length, 26000);
  // the same connection is still there and gets live events
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '1-live0001', status: 'done',
    userId: u.pk }));
  await s.next('rebalance:done', (d) => d.jobId === '1-live0001' && !d.replay);
  assert.strictEqual(s.connects, 1);
  assert.deepStrictEqual(s.disconnects, []);
  s.disconnect();
});

test('a 1 MB result is replayed as its state with resultUrl; one as large arrives live', async () => {
  const u = user();
  const [big, small] = jobIds(2, 2);
  const now = Date.now();
  await seed(u.pk, [
    { id: big, status: 'done', updatedMs: now - 30000, result: { blob: 'b'.repeat(1000000) } },
    { id: small, status: 'done', updatedMs: now - 20000, result: { ok: 1 } }]);
  const s = connect(u.token, { transports: ['websocket'] });
  await s.connected$();
  await s.next('rebalance:done', (d) => d.jobId === small && d.replay && d.result.ok === 1);
  const b = await s.next('rebalance:done', (d) => d.jobId === big && d.replay);
  assert.strictEqual(b.data.result, undefined);
  assert.strictEqual(b.data.resultUrl, `/api/v1/agent/rebalance/${big}`);
  // a live event larger than the whole queue limit (1 MiB) goes into an empty queue
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '1-live0002', status: 'done',
    userId: u.pk, result: { blob: 'L'.repeat(1200000) } }));
  const live = await s.next('rebalance:done', (d) => d.jobId === '1-live0002');
  assert.strictEqual(live.data.result.blob.length, 1200000);
  assert.strictEqual(s.connects, 1);
  assert.deepStrictEqual(s.disconnects, []);
  s.disconnect();
});

// ---- replay vs live order ------------------------------------------------------------------------

// The agent finishes job x of user u: record, then publish, in one script.
function finishJob(u, x, now) {
  return rc.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('PUBLISH', KEYS[2], ARGV[2])",
    2, `agent:rebalance:job:${x}`, 'agent:rebalance:status',
    JSON.stringify({ jobId: x, type: 'rebalance', status: 'done', user: { publicKey: u.pk },
      payload: {}, result: { ok: 1 }, createdAt: iso(now - 2000), updatedAt: iso(Date.now()) }),
    JSON.stringify({ jobId: x, status: 'done', userId: u.pk, result: { ok: 1 } }));
}

// Once a sentinel published now has arrived (after anything a replay queued): x got its live
// done, no replayed state of x followed it, and it is x's last event.
async function assertLiveLast(s, u, x, what) {
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '1-sentinel', status: 'done',
    userId: u.pk }));
  await s.next('rebalance:done', (d) => d.jobId === '1-sentinel');
  const xs = s.events.filter((e) => e.data && e.data.jobId === x)
    .map((e) => `${e.name}${e.data.replay ? '(replay)' : '(live)'}`);
  const firstLive = xs.indexOf('rebalance:done(live)');
  assert.ok(firstLive >= 0 && xs.slice(firstLive).every((e) => e.endsWith('(live)')),
    `${what}: events of ${x}: ${xs.join(' -> ')}`);
  assert.strictEqual(xs[xs.length - 1], 'rebalance:done(live)', what);
}

test('a replayed state never arrives after a newer live event of the same job', async () => {
  for (let round = 0; round < 6; round++) {
    const u = user();
    const ids = jobIds(41, 10 + round);
    const x = ids.pop(); // the newest: processing when the client connects
    const now = Date.now();
    await seed(u.pk, ids.map((id, i) => ({ id, status: 'done', updatedMs: now - 60000 + i,
      details: 'd'.repeat(2000) })));
    await seed(u.pk, [{ id: x, status: 'processing', updatedMs: now - 1000 }]);
    const s = connect(u.token, { transports: ['websocket'], autoConnect: false });
    s.once('connect', () => {
      // the agent finishes x right as the client connects: record, then publish (one script)
      finishJob(u, x, now);
    });
    s.connect();
    await s.next('rebalance:done', (d) => d.jobId === x && !d.replay, 'live done');
    await waitFor(() => s.events.filter((e) => e.data && e.data.replay && e.data.jobId !== x)
      .length === ids.length, { what: 'the other jobs replayed' });
    await assertLiveLast(s, u, x, `round ${round}`);
    s.disconnect();
  }
});

test('after a subscription gap, a caught-up state never arrives after a newer live event', async () => {
  for (let round = 0; round < 4; round++) {
    const u = user();
    const ids = jobIds(50, 20 + round);
    const x = ids.pop(); // the newest: processing when the gap ends
    const now = Date.now();
    // a read of ~100 KB (within the replay's read bound) keeps the reply in transit a while
    await seed(u.pk, ids.map((id, i) => ({ id, status: 'done', updatedMs: now - 1000 + i,
      details: 'd'.repeat(2000) })));
    await seed(u.pk, [{ id: x, status: 'processing', updatedMs: now }]);
    const s = connect(u.token, { transports: ['websocket'] });
    await s.connected$();
    await s.next('rebalance:processing', (d) => d.jobId === x && d.replay, 'the replay on connect');
    const from = gw.output.length;
    await rc.client('KILL', 'TYPE', 'pubsub'); // a gap in the gateway's subscription
    await logLine(/status subscription back: catching up/, from);
    // the agent finishes x as the catch-up reads
    await finishJob(u, x, now);
    await s.next('rebalance:done', (d) => d.jobId === x && !d.replay, 'live done');
    await logLine(new RegExp(`caught up \\d+ recent job state\\(s\\) to room user:${u.pk}\\b`), from);
    await assertLiveLast(s, u, x, `round ${round}`);
    s.disconnect();
  }
});

// ---- re-authentication on one engine session ------------------------------------------------------

test('a socket that disconnects and connects as another user gets only the new user\'s replay', async () => {
  const a = user(), b = user();
  const [ja] = jobIds(1, 30), [jb] = jobIds(1, 31);
  const now = Date.now();
  await seed(a.pk, [{ id: ja, status: 'done', updatedMs: now - 5000 }]);
  await seed(b.pk, [{ id: jb, status: 'done', updatedMs: now - 5000 }]);
  const ws = rawWs();
  await ws.opened;
  await waitFor(() => ws.msgs.length > 0, { what: 'open packet' });
  // one TCP write: the gateway reads the three packets before A's replay can answer
  ws._socket.cork();
  ws.send(`40${JSON.stringify({ token: a.token })}`);
  ws.send('41');
  ws.send(`40${JSON.stringify({ token: b.token })}`);
  ws._socket.uncork();
  // B's replay is read after A's (one command connection, answered in order)
  await waitFor(() => ws.msgs.some((m) => m.includes(jb)), { what: 'B\'s replayed job' });
  assert.strictEqual(ws.msgs.filter((m) => m.startsWith('40{"sid"')).length, 2);
  assert.deepStrictEqual(ws.msgs.filter((m) => m.includes(ja)), []);
  ws.close();
});

// ---- public key length ---------------------------------------------------------------------------

test('a publicKey as long as the HTTP API accepts (128) connects; one longer is refused by both', async () => {
  for (const len of [96, 120, 128]) {
    const u = user('K'.repeat(len - 4) + String(1000 + len).slice(-4));
    const s = connect(u.token);
    await s.connected$();
    const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ amount: 5 }) });
    assert.strictEqual(res.status, 202, `publicKey of ${len}`);
    const { jobId } = await res.json();
    await s.next('rebalance:created', (d) => d.jobId === jobId);
    s.disconnect();
  }
  const long = user('L'.repeat(129));
  const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${long.token}` },
    body: JSON.stringify({ amount: 5 }) });
  assert.strictEqual(res.status, 403);
  const s = connect(long.token);
  const err = await new Promise((resolve) => s.once('connect_error', resolve));
  assert.match(err.message, /publicKey/);
  s.disconnect();
});

// ---- a client that stops reading -------------------------------------------------------------------

test('a WebSocket client that stops reading is dropped and its connection closed, logged with its sid', async () => {
  const u = user();
  const ws = rawWs();
  await ws.opened;
  await waitFor(() => ws.msgs.length > 0, { what: 'open packet' });
  const sid = JSON.parse(ws.msgs[0].slice(1)).sid;
  ws.send(`40${JSON.stringify({ token: u.token })}`);
  await waitFor(() => ws.msgs.some((m) => m.startsWith('40{"sid"')), { what: 'CONNECT reply' });
  ws._socket.pause(); // the client stops reading; the kernel buffers fill up
  const from = gw.output.length;
  const details = 'y'.repeat(4000);
  const dropped = () => gw.output.slice(from).includes('slow consumer');
  for (let k = 0; k < 5000 && !dropped(); k += 100) {
    const p = rc.pipeline();
    for (let i = k; i < k + 100; i++) {
      p.publish('agent:rebalance:status', JSON.stringify({ jobId: `1-${i}`, status: 'processing',
        userId: u.pk, details }));
    }
    await p.exec();
  }
  const line = await logLine(/slow consumer/, from);
  assert.match(line, /WARN/i);
  assert.ok(line.includes(sid), line);
  // the server closes its end of the TCP connection although the client never reads again:
  // it waits SB_SOCKETIO_CLOSE_WAIT_S (3 s) for the pending output to be read, then resets the
  // connection and logs it (after the shutdown, so the state has changed when the line is seen)
  const serverPort = Number(new URL(base).port), clientPort = ws._socket.localPort;
  assert.strictEqual(serverTcpState(serverPort, clientPort), '01');
  await logLine(new RegExp(`session ${sid}: connection reset`), from);
  assert.notStrictEqual(serverTcpState(serverPort, clientPort), '01');
  ws.terminate();
});

// ---- Redis unavailable while a client connects ----------------------------------------------------

test('a client that connected while Redis was stalled gets its replay once Redis answers', async () => {
  const u = user();
  const [j] = jobIds(1, 40);
  // changed 60 s ago: older than a subscription gap's catch-up, within the replay window
  await seed(u.pk, [{ id: j, status: 'done', updatedMs: Date.now() - 60000, result: { ok: 2 } }]);
  const from = gw.output.length;
  redis.proc.kill('SIGSTOP');
  try {
    const s = connect(u.token, { transports: ['websocket'] });
    await s.connected$();
    await logLine(/redis \(commands\).*(stopped answering|unavailable)/, from);
  } finally {
    redis.proc.kill('SIGCONT');
  }
  const s = [...sockets].pop();
  const done = await s.next('rebalance:done', (d) => d.jobId === j);
  assert.strictEqual(done.data.replay, true);
  assert.deepStrictEqual(done.data.result, { ok: 2 });
  s.disconnect();
});

test('a client that connected while Redis was down gets its replay once Redis is back', async () => {
  const u = user();
  const [j] = jobIds(1, 41);
  await seed(u.pk, [{ id: j, status: 'done', updatedMs: Date.now() - 60000, result: { ok: 3 } }]);
  const from = gw.output.length;
  await redis.kill();
  await logLine(/redis \(commands\) unavailable/, from);
  const s = connect(u.token, { transports: ['websocket'] });
  await s.connected$();
  await redis.start();
  const done = await s.next('rebalance:done', (d) => d.jobId === j);
  assert.strictEqual(done.data.replay, true);
  assert.deepStrictEqual(done.data.result, { ok: 3 });
  s.disconnect();
});
