// Live presence for admins (SPEC §5, §6) with the official socket.io-client v4 against real
// gateways and a real redis-server: an admin socket receives agent:online, agent:status and
// agent:offline (explicit, and by expiry when heartbeats stop, through expired-key events;
// through the sweep alone when Redis refuses CONFIG; again after a Redis restart), whichever
// gateway took the heartbeat; each departure is announced once even with two gateways; user
// and agent sockets receive none of it. Tests wait on events. A "nothing else arrived" check
// always follows a later marker event that must arrive after it on the same socket.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { io } = require('socket.io-client');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-presence-events-secret';
const TTL_S = 2;
let redis, gwA, gwB;
const sockets = new Set();
const procs = new Set();

function token(role, claims = {}) {
  const sub = claims.sub || crypto.randomUUID();
  return { sub, token: jwt.sign({ publicKey: `PK-${sub}`, role, ...claims, sub }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' }) };
}

const agent = (dept = 'support') => token('agent', { name: 'Ann', email: 'ann@example.com',
  department_id: dept, department: `Dept ${dept}` });

// A socket that records every event; .next(name, pred) waits for one.
async function connect(base, tok) {
  const s = io(base, { auth: { token: tok }, forceNew: true, reconnectionDelay: 100,
    reconnectionDelayMax: 200 });
  sockets.add(s);
  s.events = [];
  s.onAny((name, data) => s.events.push({ name, data, at: Date.now() }));
  s.next = (name, pred = () => true, timeoutMs = 15000) => waitFor(
    () => s.events.find((e) => e.name === name && pred(e.data)), { what: name, timeoutMs });
  s.presence = (id) => s.events.filter((e) => e.name.startsWith('agent:') &&
    (!id || e.data.agent.agent_id === id));
  await new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', reject);
  });
  return s;
}

const about = (id, extra = () => true) => (d) => d.agent && d.agent.agent_id === id && extra(d);

async function http(base, method, path, tok, body) {
  const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${tok}`,
    ...(body ? { 'content-type': 'application/json' } : {}) },
  body: body ? JSON.stringify(body) : undefined });
  const json = await res.json();
  return { status: res.status, json };
}

async function heartbeat(base, who, status) {
  const r = await http(base, 'POST', '/api/v1/agent-status/heartbeat', who.token,
    status ? { status } : undefined);
  assert.strictEqual(r.status, 200, JSON.stringify(r.json));
  return r.json.data;
}

async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function startGateway(r, env = {}) {
  const port = await freePort();
  const g = startSwitchboard(['gateway'], { REDIS_URL: r.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', AGENT_STATUS_TTL: String(TTL_S),
    HEARTBEAT_INTERVAL: '1', ...env }, `gateway:${port}`);
  procs.add(g);
  g.base = `http://127.0.0.1:${port}`;
  await g.waitForOutput(/subscribed to agent:presence/);
  await g.waitForOutput(/subscribed to __keyevent@0__:expired/);
  await waitFor(async () => {
    try { return (await fetch(`${g.base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return g;
}

// Marker: a fresh agent comes online through gw; resolves once s has seen it. Every presence
// event published before it has then reached s too (one subscriber, in order).
async function marker(s, gw) {
  const m = agent('markers');
  await heartbeat(gw.base, m);
  await s.next('agent:online', about(m.sub));
  await http(gw.base, 'POST', '/api/v1/agent-status/offline', m.token);
  await s.next('agent:offline', about(m.sub));
}

test.before(async () => {
  redis = await startRedis();
  gwA = await startGateway(redis);
  gwB = await startGateway(redis);
  await gwA.waitForOutput(/expired key events on/);
  await gwB.waitForOutput(/expired key events on/);
});

test.after(async () => {
  for (const s of sockets) s.close();
  for (const p of procs) p.kill('SIGKILL');
  await redis.stop();
});

test('admins receive agent:online, agent:status, agent:offline; users and agents do not', async () => {
  const admin = await connect(gwA.base, token('admin').token);
  const userTok = token('user'), agentTok = agent();
  const user = await connect(gwA.base, userTok.token);
  const agentSock = await connect(gwA.base, agentTok.token);
  const a = agent('support');

  await heartbeat(gwB.base, a, 'online'); // another gateway: the event comes through Redis
  const on = (await admin.next('agent:online', about(a.sub))).data;
  assert.strictEqual(on.event, 'agent:online');
  assert.match(on.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepStrictEqual({ ...on.agent, last_heartbeat: undefined }, { agent_id: a.sub,
    name: 'Ann', email: 'ann@example.com', department_id: 'support', department: 'Dept support',
    status: 'online', current_chats: 0, max_chats: 5, last_heartbeat: undefined });

  await heartbeat(gwA.base, a, 'online'); // unchanged: no event
  await heartbeat(gwA.base, a, 'busy');
  const st = (await admin.next('agent:status', about(a.sub))).data;
  assert.strictEqual(st.previous_status, 'online');
  assert.strictEqual(st.agent.status, 'busy');

  const off = await http(gwB.base, 'POST', '/api/v1/agent-status/offline', a.token);
  assert.strictEqual(off.status, 200);
  const gone = (await admin.next('agent:offline', about(a.sub))).data;
  assert.strictEqual(gone.reason, 'explicit');
  assert.strictEqual(gone.agent.status, 'offline');
  assert.strictEqual(gone.agent.department_id, 'support');

  await marker(admin, gwA);
  assert.deepStrictEqual(admin.presence(a.sub).map((e) => e.name),
    ['agent:online', 'agent:status', 'agent:offline']);
  // user and agent sockets: their own job event arrives after every presence event above
  for (const [sock, who] of [[user, userTok], [agentSock, agentTok]]) {
    const r = await http(gwA.base, 'POST', '/api/v1/agent/rebalance', who.token, { amount: 1 });
    assert.strictEqual(r.status, 202);
    await sock.next('rebalance:created');
    assert.deepStrictEqual(sock.presence(), []);
  }
});

test('heartbeats stop: agent:offline (expired) within TTL + the backstop, announced once by two gateways', async () => {
  const admin = await connect(gwB.base, token('admin').token);
  const user = await connect(gwB.base, token('user').token);
  const a = agent('support');
  const before = (await metric(gwA.base, 'gateway_presence_expiries_total')) +
    (await metric(gwB.base, 'gateway_presence_expiries_total'));
  const rec = await heartbeat(gwA.base, a);
  const t0 = Date.now();
  await admin.next('agent:online', about(a.sub));
  const ev = await admin.next('agent:offline', about(a.sub, (d) => d.reason === 'expired'), 20000);
  const late = ev.at - t0;
  assert.ok(late >= TTL_S * 1000 - 50, `announced ${late} ms after the heartbeat, before the TTL`);
  assert.ok(late <= TTL_S * 1000 + 5000 + 1500, `announced ${late} ms after the heartbeat`);
  assert.strictEqual(ev.data.agent.department_id, 'support');
  assert.strictEqual(ev.data.agent.name, 'Ann');
  assert.ok(rec.last_heartbeat);
  // both gateways got the key event (notifications on); the script announced it once
  await waitFor(async () => (await metric(gwA.base, 'gateway_presence_expiries_total')) +
    (await metric(gwB.base, 'gateway_presence_expiries_total')) >= before + 2,
  { what: 'both gateways to see the expiry' });
  assert.strictEqual(await metric(gwA.base, 'gateway_presence_keyspace_notifications'), 1);
  assert.strictEqual(await metric(gwB.base, 'gateway_presence_keyspace_notifications'), 1);
  await marker(admin, gwB);
  assert.strictEqual(admin.presence(a.sub).filter((e) => e.name === 'agent:offline').length, 1);
  assert.deepStrictEqual(user.presence(), []);
  const r = await http(gwA.base, 'GET', `/api/v1/agent-status/agent/${a.sub}`, token('user').token);
  assert.strictEqual(r.status, 404);
});

test('a switchboard agent killed with -9 is announced offline (expired) to admins', async () => {
  const admin = await connect(gwA.base, token('admin').token);
  const id = `e2e-ev-worker-${process.pid}`;
  const w = startSwitchboard(['agent'], { REDIS_URL: redis.url, AGENT_ID: id,
    AGENT_STATUS_TTL: String(TTL_S), HEARTBEAT_INTERVAL: '1' }, 'agent');
  procs.add(w);
  const on = (await admin.next('agent:online', about(id))).data;
  assert.strictEqual(on.agent.department_id, 'workers');
  assert.strictEqual(on.agent.department, 'workers');
  w.kill('SIGKILL');
  await w.exited;
  const off = (await admin.next('agent:offline', about(id), 20000)).data;
  assert.strictEqual(off.reason, 'expired');
  assert.strictEqual(off.agent.department_id, 'workers');
});

test('Redis refuses CONFIG: the sweep alone announces expired agents', async () => {
  const locked = await startRedis({ args: ['--rename-command', 'CONFIG', ''] });
  try {
    const g = await startGateway(locked);
    await g.waitForOutput(/refused CONFIG/);
    assert.strictEqual(await metric(g.base, 'gateway_presence_keyspace_notifications'), 0);
    const admin = await connect(g.base, token('admin').token);
    const a = agent('support');
    await heartbeat(g.base, a);
    const t0 = Date.now();
    await admin.next('agent:online', about(a.sub));
    const ev = await admin.next('agent:offline', about(a.sub, (d) => d.reason === 'expired'), 20000);
    const late = ev.at - t0;
    assert.ok(late <= TTL_S * 1000 + 2000 + 1500, `announced ${late} ms after the heartbeat`);
    assert.strictEqual(await metric(g.base, 'gateway_presence_expiries_total'), 0);
    assert.ok(await metric(g.base, 'gateway_presence_offline_announced_total') >= 1);
    g.kill('SIGTERM');
    assert.deepStrictEqual(await g.exited, { code: 0, signal: null });
  } finally {
    await locked.stop();
  }
});

test('after a Redis restart notifications are turned on again and events still flow', async () => {
  const admin = await connect(gwA.base, token('admin').token);
  const count = (g, re) => (g.output.match(re) || []).length;
  const on = /expired key events on/g, sub = /subscribed to agent:presence/g;
  const before = [gwA, gwB].map((g) => [count(g, on), count(g, sub)]);
  await redis.restart();
  await waitFor(() => [gwA, gwB].every((g, i) => count(g, on) > before[i][0] &&
    count(g, sub) > before[i][1]), { what: 'notifications re-enabled and resubscribed' });
  const a = agent('support');
  await waitFor(async () => (await http(gwB.base, 'POST', '/api/v1/agent-status/heartbeat',
    a.token)).status === 200, { what: 'gateway B to reconnect' });
  await admin.next('agent:online', about(a.sub), 20000); // subscriber of A resubscribed
  const ev = await admin.next('agent:offline', about(a.sub, (d) => d.reason === 'expired'), 20000);
  assert.ok(ev);
});
