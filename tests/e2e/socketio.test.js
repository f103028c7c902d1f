// Socket.IO at /socket.io/ with the official socket.io-client v4 against two real gateways on
// one real Redis and real `switchboard agent`s: every transport mode (polling → websocket
// upgrade, polling only, websocket only), the seed 001 RebalanceManager flow end to end, a
// failing job, a POST taken by the other gateway, bad tokens (CONNECT_ERROR, no retry storm),
// replay of a state missed while disconnected, garbage on both transports, user isolation,
// CORS and the /metrics counters. Tests wait on events; the only time windows are the ones
// that check something does NOT happen, and they follow an event that must happen first.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');
const { recordingSocket, rawWs } = require('./lib/sio');

const SECRET = 'e2e-socketio-secret';
let redis, rc, gwA, gwB, agent, reportAgent, baseA, baseB, gateFile;
let userSeq = 0;
const sockets = new Set();

function user(role = 'user') {
  const n = ++userSeq;
  const pk = `SIO-${process.pid}-${n}`;
  const token = jwt.sign({ sub: `u-${n}`, publicKey: pk, role }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, token };
}

// A socket.io-client socket that records every event; .next(name, pred) waits for one.
function connect(base, token, opts = {}) {
  return recordingSocket(sockets, base, token, opts);
}

async function post(base, token, type, body) {
  const res = await fetch(`${base}/api/v1/agent/${type}`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body) });
  const json = await res.json();
  assert.strictEqual(res.status, 202, JSON.stringify(json));
  return json.jobId;
}

async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function startGateway(port) {
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance,report',
    RATE_LIMIT: '1000' }, `gateway:${port}`);
  await g.waitForOutput(/subscribed to agent:report:events/);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return { g, base };
}

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  ({ g: gwA, base: baseA } = await startGateway(await freePort()));
  ({ g: gwB, base: baseB } = await startGateway(await freePort()));
  const env = { REDIS_URL: redis.url, MAX_ATTEMPTS: '1', HEARTBEAT_INTERVAL: '5' };
  agent = startSwitchboard(['agent', '--concurrency', '4'], env, 'agent');
  // `report` jobs wait until the test creates the file named in their payload.
  gateFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sb-sio-')), 'gate');
  reportAgent = startSwitchboard(['agent', '--type', 'report', '--exec',
    'f=$(sed -n \'s/.*"gate":"\\([^"]*\\)".*/\\1/p\'); while [ ! -e "$f" ]; do sleep 0.05; done; ' +
    'echo \'{"pages":3}\''], env, 'report-agent');
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  for (const p of [agent, reportAgent, gwA, gwB]) if (p && p.exitCode === null) p.kill('SIGKILL');
  rc.disconnect();
  await redis.stop();
});

// ---- the seed 001 browser code, unchanged but for the URL -------------------------------------

function makeRebalanceManager(base) {
  class RebalanceManager {
    constructor(jwtToken) {
      this.jwtToken = jwtToken;
      this.socket = io(base, { auth: { token: jwtToken }, forceNew: true });
      sockets.add(this.socket);
      this.setupListeners();
    }

    setupListeners() {
      this.socket.on('rebalance:created', ({ jobId }) => { this.onJobCreated?.(jobId); });
      this.socket.on('rebalance:processing', ({ jobId, status }) => {
        this.onJobProcessing?.(jobId, status);
      });
      this.socket.on('rebalance:done', ({ jobId, status }) => { this.onJobDone?.(jobId, status); });
      this.socket.on('rebalance:error', ({ jobId, status }) => { this.onJobError?.(jobId, status); });
    }

    async createAndMonitor(jobConfig) {
      const res = await fetch(`${base}/api/v1/agent/rebalance`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${this.jwtToken}` },
        body: JSON.stringify(jobConfig),
      });
      const { jobId } = await res.json();
      return jobId;
    }
  }
  return RebalanceManager;
}

test('seed 001 RebalanceManager: POST → created → processing → done, default transports upgrade', async () => {
  const u = user();
  const RebalanceManager = makeRebalanceManager(baseA);
  const manager = new RebalanceManager(u.token);
  const seen = [];
  manager.onJobCreated = (jobId) => seen.push(['created', jobId]);
  manager.onJobProcessing = (jobId, status) => seen.push(['processing', jobId, status]);
  manager.onJobDone = (jobId, status) => seen.push(['done', jobId, status]);
  const upgraded = new Promise((resolve) => manager.socket.io.engine.on('upgrade', resolve));
  await new Promise((resolve) => manager.socket.on('connect', resolve));
  await upgraded;
  assert.strictEqual(manager.socket.io.engine.transport.name, 'websocket');

  const done = new Promise((resolve) => manager.socket.on('rebalance:done', resolve));
  const jobId = await manager.createAndMonitor({ priority: 'high', amount: 1000 });
  const last = await done;
  assert.deepStrictEqual(seen.map((e) => e[0]), ['created', 'processing', 'done']);
  assert.ok(seen.every((e) => e[1] === jobId));
  assert.strictEqual(seen[1][2], 'processing');
  assert.strictEqual(last.jobId, jobId);
  assert.strictEqual(last.status, 'done');
  assert.strictEqual(last.result.originalAmount, 1000);
  assert.match(last.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.strictEqual(manager.socket.io.engine.transport.name, 'websocket');
});

for (const transports of [['polling'], ['websocket']]) {
  test(`${transports[0]} only: the full job flow arrives`, async () => {
    const u = user();
    const s = connect(baseA, u.token, { transports });
    await s.connected$();
    assert.strictEqual(s.io.engine.transport.name, transports[0]);
    const id = await post(baseA, u.token, 'rebalance', { amount: 50 });
    await s.next('rebalance:created', (d) => d.jobId === id);
    await s.next('rebalance:processing', (d) => d.jobId === id);
    const done = await s.next('rebalance:done', (d) => d.jobId === id);
    assert.strictEqual(done.data.result.fee, 1);
    assert.strictEqual(s.io.engine.transport.name, transports[0]);
    s.disconnect();
  });
}

test('a failing job arrives as rebalance:error with its message', async () => {
  const u = user();
  const s = connect(baseA, u.token);
  await s.connected$();
  // The API refuses amount -1 (400), so queue it the way the seeds' backend would.
  const id = `${Date.now()}-e${process.pid}`;
  const now = new Date().toISOString();
  await rc.multi()
    .set(`agent:rebalance:job:${id}`, JSON.stringify({ jobId: id, type: 'rebalance',
      status: 'queued', user: { publicKey: u.pk }, payload: { amount: -1 }, attempts: 0,
      createdAt: now, updatedAt: now }), 'EX', 86400)
    .zadd(`agent:rebalance:user:${u.pk}`, Date.now(), id)
    .lpush('agent:rebalance:jobs', id)
    .exec();
  const err = await s.next('rebalance:error', (d) => d.jobId === id);
  assert.strictEqual(err.data.status, 'error');
  assert.match(err.data.error, /Invalid amount/);
  s.disconnect();
});

test('two gateways on one Redis: client on A, POST to B, created and done arrive', async () => {
  const u = user();
  const s = connect(baseA, u.token);
  await s.connected$();
  const id = await post(baseB, u.token, 'rebalance', { amount: 10 });
  await s.next('rebalance:created', (d) => d.jobId === id);
  await s.next('rebalance:done', (d) => d.jobId === id);
  s.disconnect();
});

test('bad tokens get connect_error with a message, no room, and no reconnection', async () => {
  const opened = await metric(baseA, 'gateway_engineio_opened_total')
    + await metric(baseA, 'gateway_websocket_opened_total');
  const forged = jwt.sign({ sub: 'x', publicKey: 'PK-forged', role: 'user' }, 'wrong-secret',
    { expiresIn: '1h' });
  const expired = jwt.sign({ sub: 'x', publicKey: 'PK-exp', role: 'user',
    exp: Math.floor(Date.now() / 1000) - 60 }, SECRET);
  const cases = [[forged, /signature|invalid/i], [expired, /expired/i], ['garbage', /./],
    [undefined, /token/i]];
  for (const [token, needle] of cases) {
    const s = connect(baseA, token);
    let attempts = 0;
    s.io.on('reconnect_attempt', () => { attempts++; });
    const err = await new Promise((resolve) => s.once('connect_error', resolve));
    assert.match(err.message, needle);
    assert.strictEqual(s.active, false, 'the client must not retry a refused CONNECT');
    // a retry storm would show within the reconnection delay (100–200 ms) several times over
    await new Promise((r) => setTimeout(r, 600));
    assert.strictEqual(attempts, 0);
    assert.strictEqual(s.connected, false);
    s.disconnect();
  }
  const after = await metric(baseA, 'gateway_engineio_opened_total')
    + await metric(baseA, 'gateway_websocket_opened_total');
  assert.ok(after - opened <= cases.length * 2, `connection attempts: ${after - opened}`);
  assert.ok(await metric(baseA, 'gateway_socketio_auth_refused_total') >= cases.length);
});

test('a client disconnected during processing learns the final state on reconnect', async () => {
  const u = user();
  const s = connect(baseA, u.token);
  await s.connected$();
  const gate = `${gateFile}-${userSeq}`;
  const id = await post(baseA, u.token, 'report', { gate });
  await s.next('report:processing', (d) => d.jobId === id);
  s.disconnect();
  const before = s.events.length;
  fs.writeFileSync(gate, '');
  await waitFor(async () => JSON.parse(await rc.get(`agent:report:job:${id}`)).status === 'done',
    { what: 'the report job to finish' });
  s.connect();
  const done = await s.next('report:done', (d) => d.jobId === id);
  assert.ok(s.events.indexOf(done) >= before, 'received after the reconnect');
  assert.deepStrictEqual(done.data.result, { pages: 3 });
  assert.strictEqual(done.data.replay, true);
  s.disconnect();
});

test('user isolation: B never receives A\'s events', async () => {
  const a = user(), b = user();
  const sa = connect(baseA, a.token), sb = connect(baseB, b.token, { transports: ['polling'] });
  await Promise.all([sa.connected$(), sb.connected$()]);
  const idA = await post(baseA, a.token, 'rebalance', { amount: 7 });
  await sa.next('rebalance:done', (d) => d.jobId === idA);
  // then one for B: once B has it, A's (published earlier on the same channel) would be there
  const idB = await post(baseB, b.token, 'rebalance', { amount: 8 });
  await sb.next('rebalance:done', (d) => d.jobId === idB);
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '1-x', status: 'done',
    userId: a.pk }));
  await sa.next('rebalance:done', (d) => d.jobId === '1-x');
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '2-x', status: 'done',
    userId: b.pk }));
  await sb.next('rebalance:done', (d) => d.jobId === '2-x');
  assert.deepStrictEqual(sb.events.filter((e) => e.data.jobId === idA || e.data.jobId === '1-x'), []);
  assert.deepStrictEqual(sa.events.filter((e) => e.data.jobId === idB || e.data.jobId === '2-x'), []);
  sa.disconnect();
  sb.disconnect();
});

// ---- garbage ----------------------------------------------------------------------------------

async function handshake(base) {
  const r = await fetch(`${base}/socket.io/?EIO=4&transport=polling`);
  assert.strictEqual(r.status, 200);
  const text = await r.text();
  assert.strictEqual(text[0], '0');
  return JSON.parse(text.slice(1)).sid;
}

test('garbage closes only its own session; a connected client keeps receiving', async () => {
  const u = user();
  const good = connect(baseA, u.token);
  await good.connected$();
  let disconnected = false;
  good.on('disconnect', () => { disconnected = true; });

  // unknown sid, unknown transport, bad version, bad method
  const unknown = await fetch(`${baseA}/socket.io/?EIO=4&transport=polling&sid=nope`);
  assert.strictEqual(unknown.status, 400);
  assert.deepStrictEqual(await unknown.json(), { code: 1, message: 'Session ID unknown' });
  const tr = await fetch(`${baseA}/socket.io/?EIO=4&transport=carrier-pigeon`);
  assert.strictEqual(tr.status, 400);
  assert.strictEqual((await tr.json()).code, 0);
  const ver = await fetch(`${baseA}/socket.io/?EIO=3&transport=polling`);
  assert.strictEqual(ver.status, 400);
  assert.strictEqual((await ver.json()).code, 5);

  // bad polling POST bodies: each closes its session, whose next GET is refused
  // (Engine.IO garbage is answered 400; a valid Engine.IO message carrying a bad Socket.IO
  // packet is accepted by the engine, 200 as in the reference, and closed by Socket.IO)
  for (const body of ['\x1e\x1e', '9nonsense', 'b!!!', '4' + 'x'.repeat(10), '40{"token":']) {
    const sid = await handshake(baseA);
    const q = `${baseA}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
    const r = await fetch(q, { method: 'POST', body });
    const want = body[0] === '4' ? [200, 400] : [400];
    assert.ok(want.includes(r.status), `${JSON.stringify(body)} answered ${r.status}`);
    const g = await fetch(q);
    const t = await g.text();
    assert.ok(g.status === 400 || t === '1' || t.endsWith('\x1e1') || t.startsWith('1'),
      `${JSON.stringify(body)}: session should be closed, got ${g.status} ${t}`);
  }
  // a body over maxPayload is refused with 413
  const sid = await handshake(baseA);
  const big = await fetch(`${baseA}/socket.io/?EIO=4&transport=polling&sid=${sid}`,
    { method: 'POST', body: '4' + 'x'.repeat(1000001) });
  assert.strictEqual(big.status, 413);

  // raw WebSockets: junk text, junk binary, a message over maxPayload, a bad upgrade sid
  for (const junk of ['\u0000\u0001garbage', Buffer.from([0xff, 0x00, 0x13]), '2', '4' + 'y'.repeat(1000001)]) {
    const ws = rawWs(baseA);
    await ws.opened;
    await waitFor(() => ws.msgs.length > 0, { what: 'open packet' });
    assert.strictEqual(ws.msgs[0][0], '0');
    ws.send(junk);
    await ws.closed;
  }
  const bad = rawWs(baseA, 'EIO=4&transport=websocket&sid=doesnotexist');
  await assert.rejects(bad.opened);

  // the good client was not disturbed
  const id = await post(baseA, u.token, 'rebalance', { amount: 3 });
  await good.next('rebalance:done', (d) => d.jobId === id);
  assert.strictEqual(disconnected, false);
  assert.strictEqual(good.connected, true);
  good.disconnect();
});

test('CORS on the polling transport, including the OPTIONS preflight', async () => {
  const origin = 'http://app.example';
  const pre = await fetch(`${baseA}/socket.io/?EIO=4&transport=polling`, { method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type' } });
  assert.strictEqual(pre.status, 204);
  assert.strictEqual(pre.headers.get('access-control-allow-origin'), origin);
  assert.strictEqual(pre.headers.get('access-control-allow-credentials'), 'true');
  assert.match(pre.headers.get('access-control-allow-methods'), /POST/);
  assert.match(pre.headers.get('access-control-allow-headers'), /content-type/);
  const hs = await fetch(`${baseA}/socket.io/?EIO=4&transport=polling`, { headers: { origin } });
  assert.strictEqual(hs.status, 200);
  assert.strictEqual(hs.headers.get('access-control-allow-origin'), origin);
  const open = JSON.parse((await hs.text()).slice(1));
  assert.deepStrictEqual(open.upgrades, ['websocket']);
  assert.strictEqual(open.pingInterval, 25000);
  assert.strictEqual(open.maxPayload, 1000000);
});

test('/metrics counts connections and status messages; invalid ones are dropped, not fatal', async () => {
  const u = user();
  const s = connect(baseA, u.token);
  await s.connected$();
  assert.ok(await metric(baseA, 'gateway_socketio_connections') >= 1);
  const dropped = await metric(baseA, 'gateway_status_messages_dropped_total');
  const forwarded = await metric(baseA, 'gateway_status_messages_forwarded_total');
  for (const m of ['not json', '{"jobId":"1-a"}', '{"jobId":"1-a","status":"weird","userId":"x"}',
    '[]', '{"event":"nope"}']) {
    await rc.publish(m.includes('event') ? 'agent:rebalance:events' : 'agent:rebalance:status', m);
  }
  await rc.publish('agent:rebalance:status', JSON.stringify({ jobId: '3-x', status: 'processing',
    userId: u.pk, details: 'step 1' }));
  const ev = await s.next('rebalance:processing', (d) => d.jobId === '3-x');
  assert.strictEqual(ev.data.details, 'step 1');
  assert.strictEqual(await metric(baseA, 'gateway_status_messages_dropped_total') - dropped, 5);
  assert.ok(await metric(baseA, 'gateway_status_messages_forwarded_total') - forwarded >= 1);
  assert.strictEqual(await metric(baseA, 'gateway_subscriber_connected'), 1);
  s.disconnect();
  assert.strictEqual(gwA.exitCode, null);
});
