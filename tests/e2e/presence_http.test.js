// Presence over the gateway's HTTP API (SPEC §3 /agent-status/*, §5), with fetch against a real
// redis-server and the real `switchboard gateway`: every route under /api and /api/v1, every
// error code (400 malformed ids/status/body, 401, 403 per role, 404, 405, 409, 503), identity
// taken from the token and never from the body, expiry with AGENT_STATUS_TTL=2 (the agent
// leaves /online, /department and /agent; stale set members are never shown), 1000 agents
// heartbeating concurrently then /stats, concurrent /assign never over capacity, and
// `switchboard agent` workers listed under department `workers`. Tests run in order and share
// one Redis; waits are on Redis state or HTTP answers, never fixed sleeps.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');
const { request, assertError } = require('./lib/http');

const SECRET = 'e2e-presence-secret';
let redis, rc, gw, gwShort, base, baseShort;

// A token for role with extra claims; sub defaults to a fresh UUID.
function token(role, claims = {}) {
  const sub = claims.sub || crypto.randomUUID();
  const t = jwt.sign({ publicKey: `PK-${sub}`, role, ...claims, sub }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { sub, auth: { authorization: `Bearer ${t}` } };
}

// A person agent of department dept (null: no department claims at all).
function agent(dept = 'support', extra = {}) {
  const claims = { name: 'Agent Smith', email: 'smith@example.com', ...extra };
  if (dept) Object.assign(claims, { department_id: dept, department: `Dept ${dept}` });
  return token('agent', claims);
}

const ADMIN = () => token('admin');
const USER = () => token('user');

const call = (method, path, { at = base, ...opts } = {}) => request(method, at + path, opts);

function assertOk(r, message) {
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.json.success, true);
  if (message) assert.strictEqual(r.json.message, message);
  assert.ok(r.json.data !== undefined, 'data');
  return r.json.data;
}

const heartbeat = (who, body, opts = {}) =>
  call('POST', '/api/v1/agent-status/heartbeat', { headers: who.auth, body, ...opts });
const online = (who = USER(), opts = {}) =>
  call('GET', '/api/v1/agent-status/online', { headers: who.auth, ...opts });
const dept = (id, who = USER(), opts = {}) =>
  call('GET', `/api/v1/agent-status/department/${id}`, { headers: who.auth, ...opts });
const one = (id, who = USER(), opts = {}) =>
  call('GET', `/api/v1/agent-status/agent/${id}`, { headers: who.auth, ...opts });
const assign = (d, who = ADMIN()) =>
  call('POST', '/api/v1/agent-status/assign', { headers: who.auth, body: { department_id: d } });

async function startGateway(port, env = {}) {
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', ...env }, `gateway:${port}`);
  await g.waitForOutput(/listening on/);
  await waitFor(async () => {
    try { return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return g;
}

// Runs fn over items with at most limit in flight; resolves to the results in order.
async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i], i); }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return out;
}

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  rc.on('error', () => {}); // Redis is killed on purpose in the last test
  const [p1, p2] = [await freePort(), await freePort()];
  base = `http://127.0.0.1:${p1}`;
  baseShort = `http://127.0.0.1:${p2}`;
  gw = await startGateway(p1);
  gwShort = await startGateway(p2, { AGENT_STATUS_TTL: '2', HEARTBEAT_INTERVAL: '1' });
});

test.after(async () => {
  for (const g of [gw, gwShort]) if (g && g.exitCode === null) g.kill('SIGKILL');
  rc.disconnect();
  await redis.stop();
});

test('heartbeat takes the identity from the token, never from the body', async () => {
  const a = agent('support');
  for (const prefix of ['/api/v1', '/api']) {
    const r = await call('POST', `${prefix}/agent-status/heartbeat`, { headers: a.auth,
      body: { status: 'busy', agent_id: 'intruder-1', name: 'Mallory', department_id: 'evil',
        current_chats: 99, max_chats: 1000 } });
    const d = assertOk(r, 'Heartbeat updated successfully');
    assert.strictEqual(d.agent_id, a.sub);
    assert.strictEqual(d.status, 'busy');
  }
  const stored = JSON.parse(await rc.get(`agent:online:${a.sub}`));
  assert.deepStrictEqual(Object.keys(stored).sort(), ['agent_id', 'current_chats', 'department',
    'department_id', 'email', 'last_heartbeat', 'max_chats', 'name', 'status']);
  assert.strictEqual(stored.agent_id, a.sub);
  assert.strictEqual(stored.name, 'Agent Smith');
  assert.strictEqual(stored.email, 'smith@example.com');
  assert.strictEqual(stored.department_id, 'support');
  assert.strictEqual(stored.department, 'Dept support');
  assert.strictEqual(stored.current_chats, 0);
  assert.strictEqual(stored.max_chats, 5);
  assert.match(stored.last_heartbeat, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const ttl = await rc.ttl(`agent:online:${a.sub}`);
  assert.ok(ttl > 290 && ttl <= 300, `ttl ${ttl}`);
  assert.strictEqual(await rc.exists('agent:online:intruder-1'), 0);
  assert.strictEqual(await rc.sismember('agents:all', a.sub), 1);
  assert.strictEqual(await rc.sismember('agents:dept:support', a.sub), 1);
  assert.strictEqual(await rc.exists('agents:dept:evil'), 0);
  const idxTtl = await rc.ttl('agents:all');
  assert.ok(idxTtl > 590 && idxTtl <= 600, `agents:all ttl ${idxTtl}`);

  // no body, and an empty object: status online
  assert.strictEqual(assertOk(await heartbeat(a)).status, 'online');
  assert.strictEqual(assertOk(await heartbeat(a, { status: 'away' })).status, 'away');
  assert.strictEqual(assertOk(await heartbeat(a, {})).status, 'online');
  // an admin heartbeats as itself
  const admin = ADMIN();
  assert.strictEqual(assertOk(await heartbeat(admin)).agent_id, admin.sub);
  await call('POST', '/api/v1/agent-status/offline', { headers: admin.auth });
});

test('a POST without a body (content-length: 0) runs its script once; NOSCRIPT → EVAL', async () => {
  const a = agent('support');
  await rc.script('FLUSH'); // each script is then sent as EVALSHA, refused, and sent as EVAL
  const mon = await rc.monitor();
  const seen = [];
  mon.on('monitor', (_t, args, source) => { // commands the gateway sent, not the scripts' own
    if (source !== 'lua' && args.some((x) => String(x).includes(a.sub))) seen.push(args[0].toLowerCase());
  });
  try {
    const r = await fetch(`${base}/api/v1/agent-status/heartbeat`, { method: 'POST', headers: a.auth });
    assert.strictEqual(r.status, 200);
    assertOk(await one(a.sub)); // its GET follows any duplicate on the same connection
    await waitFor(() => seen.includes('get'), { what: 'the GET in MONITOR' });
    const offline = await fetch(`${base}/api/v1/agent-status/offline`, { method: 'POST', headers: a.auth });
    assert.strictEqual(offline.status, 200);
    assertError(await one(a.sub), 404, 'not_found');
    await waitFor(() => seen.filter((c) => c === 'get').length === 2, { what: 'the second GET' });
    assert.deepStrictEqual(seen.filter((c) => c !== 'get'), ['evalsha', 'eval', 'evalsha', 'eval']);
  } finally {
    mon.disconnect();
  }
});

test('every presence script works after SCRIPT FLUSH between calls (NOSCRIPT → EVAL)', async () => {
  const dep = `flush-${crypto.randomBytes(4).toString('hex')}`;
  const a = agent(dep);
  const flushed = async (f) => { await rc.script('FLUSH'); return f(); };
  assert.strictEqual(assertOk(await flushed(() => heartbeat(a, { status: 'online' }))).agent_id, a.sub);
  assert.ok(assertOk(await flushed(() => online())).agents.some((x) => x.agent_id === a.sub));
  assert.deepStrictEqual(assertOk(await flushed(() => dept(dep))).agents.map((x) => x.agent_id), [a.sub]);
  const stats = assertOk(await flushed(() => call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth })));
  assert.strictEqual(stats.departments.find((x) => x.department_id === dep).total, 1);
  assert.strictEqual(assertOk(await flushed(() => assign(dep))).agent_id, a.sub);
  const rel = assertOk(await flushed(() => call('POST', '/api/v1/agent-status/release',
    { headers: ADMIN().auth, body: { agent_id: a.sub } })));
  assert.strictEqual(rel.current_chats, 0);
  assert.strictEqual(assertOk(await flushed(() => call('POST', '/api/v1/agent-status/offline',
    { headers: a.auth }))).was_online, true);
});

test('a token without department_id is accepted: online, in no department', async () => {
  const a = agent(null);
  const d = assertOk(await heartbeat(a, { status: 'online' }));
  assert.strictEqual(d.department_id, '');
  const all = assertOk(await online());
  assert.ok(all.agents.some((x) => x.agent_id === a.sub));
  assert.strictEqual(assertOk(await one(a.sub)).department_id, '');
  const stats = assertOk(await call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth }));
  assert.ok(stats.departments.some((x) => x.department_id === '' && x.total >= 1));
});

test('lists, one agent and stats show what heartbeats said', async () => {
  const dep = `dept-${crypto.randomBytes(4).toString('hex')}`;
  const a = agent(dep), b = agent(dep), c = agent('other-dept');
  assertOk(await heartbeat(a, { status: 'online' }));
  assertOk(await heartbeat(b, { status: 'busy' }));
  assertOk(await heartbeat(c, { status: 'away' }));
  for (const prefix of ['/api/v1', '/api']) {
    const r = await call('GET', `${prefix}/agent-status/department/${dep}`, { headers: USER().auth });
    const d = assertOk(r, 'Department agents retrieved');
    assert.strictEqual(d.department_id, dep);
    assert.strictEqual(d.count, 2);
    assert.deepStrictEqual(d.agents.map((x) => x.agent_id), [a.sub, b.sub].sort());
  }
  const all = assertOk(await online(agent()), 'Online agents retrieved');
  assert.strictEqual(all.count, all.agents.length);
  for (const x of [a, b, c]) assert.ok(all.agents.some((y) => y.agent_id === x.sub));
  const rec = assertOk(await one(b.sub, ADMIN()), 'Agent status retrieved');
  assert.strictEqual(rec.status, 'busy');
  assert.strictEqual(rec.department_id, dep);
  const empty = assertOk(await dept('nobody-here'));
  assert.deepStrictEqual([empty.count, empty.agents], [0, []]);

  const stats = assertOk(await call('GET', '/api/agent-status/stats', { headers: ADMIN().auth }),
    'Department statistics retrieved');
  const mine = stats.departments.find((x) => x.department_id === dep);
  assert.deepStrictEqual(mine, { department_id: dep, department: `Dept ${dep}`, total: 2,
    online: 1, busy: 1, away: 0, current_chats: 0, max_chats: 10 });
  assert.strictEqual(stats.total, all.count);
  const by = stats.by_status;
  assert.strictEqual(by.online + by.busy + by.away, stats.total);
});

test('offline marks the caller (from the token) offline', async () => {
  const a = agent('support'), b = agent('support');
  assertOk(await heartbeat(a));
  assertOk(await heartbeat(b));
  for (const prefix of ['/api/v1', '/api']) {
    const r = await call('POST', `${prefix}/agent-status/offline`, { headers: a.auth,
      body: { agent_id: b.sub } });
    const d = assertOk(r, 'Agent marked offline');
    assert.strictEqual(d.agent_id, a.sub);
    assert.strictEqual(d.status, 'offline');
    assert.strictEqual(d.was_online, prefix === '/api/v1');
  }
  assertError(await one(a.sub), 404, 'not_found', /offline/);
  assertOk(await one(b.sub)); // the body's agent_id was ignored
  assert.strictEqual(await rc.exists(`agent:online:${a.sub}`), 0);
  assert.strictEqual(await rc.sismember('agents:dept:support', a.sub), 0);
  assert.strictEqual(await rc.hexists('agents:meta', a.sub), 0);
});

test('every route refuses a missing or bad token (401) and wrong roles (403)', async () => {
  const routes = [
    ['POST', '/agent-status/heartbeat', ['agent', 'admin']],
    ['POST', '/agent-status/offline', ['agent', 'admin']],
    ['GET', '/agent-status/online', ['user', 'agent', 'admin']],
    ['GET', '/agent-status/department/support', ['user', 'agent', 'admin']],
    ['GET', `/agent-status/agent/${crypto.randomUUID()}`, ['user', 'agent', 'admin']],
    ['GET', '/agent-status/stats', ['admin']],
    ['POST', '/agent-status/assign', ['admin']],
    ['POST', '/agent-status/release', ['admin']],
  ];
  const expired = jwt.sign({ sub: 'x', role: 'admin', exp: Math.floor(Date.now() / 1000) - 10 }, SECRET);
  const wrongKey = jwt.sign({ sub: 'x', role: 'admin' }, 'not-the-secret', { expiresIn: '1h' });
  const hs512 = jwt.sign({ sub: 'x', role: 'admin' }, SECRET, { algorithm: 'HS512', expiresIn: '1h' });
  for (const [method, path, roles] of routes) {
    for (const prefix of ['/api/v1', '/api']) {
      assertError(await call(method, prefix + path), 401, 'unauthorized', /missing bearer/);
      for (const t of [expired, wrongKey, hs512, 'garbage'])
        assertError(await call(method, prefix + path, { headers: { authorization: `Bearer ${t}` } }),
          401, 'unauthorized');
    }
    for (const role of ['user', 'agent', 'admin']) {
      if (roles.includes(role)) continue;
      const r = await call(method, `/api/v1${path}`, { headers: token(role).auth,
        body: method === 'POST' ? {} : undefined });
      assertError(r, 403, 'forbidden', new RegExp(`role ${role}`));
    }
  }
  // a refused heartbeat wrote nothing
  const u = USER();
  await call('POST', '/api/v1/agent-status/heartbeat', { headers: u.auth });
  assert.strictEqual(await rc.exists(`agent:online:${u.sub}`), 0);
});

test('malformed ids, department ids, status and bodies are 400 and change nothing', async () => {
  const before = await rc.dbsize();
  const badIds = ['bad*id', '-leading-dash', 'trailing.', 'a'.repeat(129), 'sp%20ace', 'semi%3Bcolon'];
  for (const id of badIds) {
    assertError(await one(id), 400, 'bad_request', /agent_id/);
    assertError(await call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth,
      body: { agent_id: decodeURIComponent(id) } }), 400, 'bad_request', /agent_id/);
  }
  for (const d of ['bad*dept', 'a'.repeat(129), 'sp%20ace']) {
    assertError(await dept(d), 400, 'bad_request', /department_id/);
    assertError(await assign(decodeURIComponent(d)), 400, 'bad_request', /department_id/);
  }
  const a = agent('support');
  for (const status of ['offline', 'ONLINE', '', 7, true, ['online'], { s: 1 }])
    assertError(await heartbeat(a, { status }), 400, 'bad_request', /status/);
  for (const raw of ['nope', '[1,2]', '"online"', '{"status":'])
    assertError(await heartbeat(a, raw, { raw: true }), 400, 'invalid_json');
  for (const body of [undefined, {}, { department_id: 5 }, { department_id: null }])
    assertError(await call('POST', '/api/v1/agent-status/assign', { headers: ADMIN().auth, body }),
      400, body === undefined ? 'invalid_json' : 'bad_request');
  assertError(await call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth, body: {} }),
    400, 'bad_request', /agent_id/);
  // a name twice in an object: cJSON would read the first, a JavaScript agent the last
  assertError(await heartbeat(a, '{"status":"busy","status":"away"}', { raw: true }), 400,
    'bad_request', /duplicate key "status"/);
  assertError(await call('POST', '/api/v1/agent-status/assign', { headers: ADMIN().auth,
    body: '{"department_id":"support","department_id":"sales"}', raw: true }), 400, 'bad_request',
  /duplicate key "department_id"/);
  assertError(await call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth,
    body: `{"agent_id":"${a.sub}","x":{"y":1,"y":2}}`, raw: true }), 400, 'bad_request',
  /duplicate key "y"/);
  // claims that cannot name an agent or a department
  assertError(await heartbeat(token('agent', { sub: 'has space' })), 400, 'bad_request', /sub/);
  assertError(await heartbeat(token('agent', { department_id: 'bad dept' })), 400, 'bad_request',
    /department_id/);
  assertError(await call('POST', '/api/v1/agent-status/offline',
    { headers: token('agent', { sub: 'no/slash' }).auth }), 400, 'bad_request', /sub/);
  assert.strictEqual(await rc.exists(`agent:online:${a.sub}`), 0);
  assert.strictEqual(await rc.dbsize(), before);
});

test('unknown agents are 404, unknown paths 404, wrong methods 405', async () => {
  const ghost = crypto.randomUUID();
  assertError(await one(ghost), 404, 'not_found', new RegExp(ghost));
  assertError(await one('worker-host-123-abc'), 404, 'not_found');
  assertError(await call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth,
    body: { agent_id: ghost } }), 404, 'not_found');
  assertError(await call('GET', '/api/v1/agent-status/nothing', { headers: ADMIN().auth }), 404,
    'not_found');
  const r = await call('GET', '/api/v1/agent-status/heartbeat', { headers: ADMIN().auth });
  assertError(r, 405, 'method_not_allowed');
  assert.strictEqual(r.headers.get('allow'), 'POST');
  assertError(await call('DELETE', '/api/agent-status/online', { headers: ADMIN().auth }), 405,
    'method_not_allowed');
});

test('an agent whose heartbeats stop disappears after AGENT_STATUS_TTL; stale members never show', async () => {
  const dep = `ttl-${crypto.randomBytes(4).toString('hex')}`;
  const a = agent(dep), stay = agent(dep);
  const r = await heartbeat(a, { status: 'online' }, { at: baseShort });
  assertOk(r);
  const ttl = await rc.pttl(`agent:online:${a.sub}`);
  assert.ok(ttl > 0 && ttl <= 2000, `pttl ${ttl}`);
  assertOk(await heartbeat(stay)); // TTL 300 on the other gateway
  assert.ok(assertOk(await dept(dep)).agents.some((x) => x.agent_id === a.sub));

  // heartbeats stop: wait for Redis to expire the key (an event, not a sleep)
  await waitFor(async () => (await rc.exists(`agent:online:${a.sub}`)) === 0,
    { what: 'the presence key to expire', timeoutMs: 10000 });
  const d = assertOk(await dept(dep));
  assert.deepStrictEqual(d.agents.map((x) => x.agent_id), [stay.sub]);
  assert.strictEqual(d.count, 1);
  assert.ok(!assertOk(await online()).agents.some((x) => x.agent_id === a.sub));
  assertError(await one(a.sub), 404, 'not_found');
  assert.strictEqual(await rc.sismember(`agents:dept:${dep}`, a.sub), 0);
  assert.strictEqual(await rc.sismember('agents:all', a.sub), 0);

  // members whose key is gone (written behind the gateway's back) are never shown, and retired
  const ghost = crypto.randomUUID();
  await rc.sadd('agents:all', ghost);
  await rc.sadd(`agents:dept:${dep}`, ghost);
  assert.ok(!assertOk(await dept(dep)).agents.some((x) => x.agent_id === ghost));
  assert.ok(!assertOk(await online()).agents.some((x) => x.agent_id === ghost));
  await rc.sadd(`agents:dept:${dep}`, ghost);
  const st = assertOk(await call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth }));
  assert.strictEqual(st.departments.find((x) => x.department_id === dep).total, 1);
  await rc.sadd(`agents:dept:${dep}`, ghost);
  assert.strictEqual(assertOk(await assign(dep)).agent_id, stay.sub);
  assert.strictEqual(await rc.sismember(`agents:dept:${dep}`, ghost), 0);
  assert.strictEqual(await rc.sismember('agents:all', ghost), 0);
});

test('1000 agents heartbeating concurrently over HTTP, then /stats is exact', async () => {
  await rc.flushdb();
  const statuses = ['online', 'busy', 'away'];
  const agents = Array.from({ length: 1000 }, (_, i) => ({ i, who: agent(`load-${i % 10}`),
    status: statuses[i % 3] }));
  const codes = await pool(agents, 64, async (x) =>
    (await heartbeat(x.who, { status: x.status })).status);
  assert.deepStrictEqual([...new Set(codes)], [200]);
  assert.strictEqual(await rc.scard('agents:all'), 1000);
  const stats = assertOk(await call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth }));
  assert.strictEqual(stats.total, 1000);
  assert.deepStrictEqual(stats.by_status, { online: 334, busy: 333, away: 333 });
  assert.strictEqual(stats.departments.length, 10);
  for (let k = 0; k < 10; k++) {
    const mine = agents.filter((x) => x.i % 10 === k);
    const want = { department_id: `load-${k}`, department: `Dept load-${k}`, total: 100,
      online: 0, busy: 0, away: 0, current_chats: 0, max_chats: 500 };
    for (const x of mine) want[x.status]++;
    assert.deepStrictEqual(stats.departments[k], want);
  }
  const all = assertOk(await online());
  assert.strictEqual(all.count, 1000);
  assert.strictEqual(new Set(all.agents.map((x) => x.agent_id)).size, 1000);
  assert.strictEqual(assertOk(await dept('load-3')).count, 100);
});

test('concurrent /assign never exceeds max_chats; 409 exactly when capacity is exhausted', async () => {
  const dep = `cap-${crypto.randomBytes(4).toString('hex')}`;
  const agents = [agent(dep), agent(dep), agent(dep)];
  for (const a of agents) assertOk(await heartbeat(a, { status: 'online' }));
  const busy = agent(dep);
  assertOk(await heartbeat(busy, { status: 'busy' })); // never assigned
  const capacity = 3 * 5;

  const results = await Promise.all(Array.from({ length: 40 }, () => assign(dep)));
  const ok = results.filter((r) => r.status === 200);
  const full = results.filter((r) => r.status === 409);
  assert.strictEqual(ok.length, capacity, results.map((r) => r.status).join(','));
  assert.strictEqual(full.length, 40 - capacity);
  for (const r of full) assertError(r, 409, 'no_agent_available', new RegExp(dep));
  for (const r of ok) assert.notStrictEqual(r.json.data.agent_id, busy.sub);
  for (const a of agents) {
    const rec = JSON.parse(await rc.get(`agent:online:${a.sub}`));
    assert.strictEqual(rec.current_chats, 5);
    assert.ok((await rc.ttl(`agent:online:${a.sub}`)) > 290, 'assign keeps the TTL');
  }
  const seen = ok.map((r) => r.json.data.current_chats).sort((x, y) => x - y);
  assert.deepStrictEqual(seen, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]);

  // a heartbeat keeps current_chats; release frees exactly one slot, which is then taken
  assert.strictEqual(assertOk(await heartbeat(agents[1], { status: 'online' })).current_chats, 5);
  const rel = assertOk(await call('POST', '/api/v1/agent-status/release',
    { headers: ADMIN().auth, body: { agent_id: agents[1].sub } }), 'Chat released');
  assert.strictEqual(rel.current_chats, 4);
  const again = assertOk(await assign(dep), 'Agent assigned');
  assert.strictEqual(again.agent_id, agents[1].sub);
  assert.strictEqual(again.current_chats, 5);
  assertError(await assign(dep), 409, 'no_agent_available');
  assertError(await assign(`empty-${dep}`), 409, 'no_agent_available');

  // sequentially: 5 slots, the 6th is refused
  const solo = `solo-${crypto.randomBytes(4).toString('hex')}`;
  const s = agent(solo);
  assertOk(await heartbeat(s));
  for (let k = 1; k <= 5; k++) assert.strictEqual(assertOk(await assign(solo)).current_chats, k);
  assertError(await assign(solo), 409, 'no_agent_available');
});

test('switchboard agent workers are listed under department workers', async () => {
  const id = `e2e-worker-${process.pid}`;
  const w = startSwitchboard(['agent', '--concurrency', '3'], { REDIS_URL: redis.url,
    AGENT_ID: id }, 'agent');
  try {
    const rec = await waitFor(async () => {
      const r = await one(id);
      return r.status === 200 ? r.json.data : null;
    }, { what: 'the worker to be online' });
    assert.strictEqual(rec.department_id, 'workers');
    assert.strictEqual(rec.department, 'workers');
    assert.strictEqual(rec.max_chats, 3);
    const d = assertOk(await dept('workers'));
    assert.deepStrictEqual(d.agents.map((x) => x.agent_id), [id]);
    const st = assertOk(await call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth }));
    assert.strictEqual(st.departments.find((x) => x.department_id === 'workers').total, 1);
    w.kill('SIGTERM');
    assert.deepStrictEqual(await w.exited, { code: 0, signal: null });
    assertError(await one(id), 404, 'not_found');
  } finally {
    w.kill('SIGKILL');
  }
});

const orphaned = async () => Number((await (await fetch(`${base}/metrics`)).text())
  .match(/^gateway_responses_orphaned_total (\d+)/m)[1]);

const inFlight = async () => Number((await (await fetch(`${base}/metrics`)).text())
  .match(/^gateway_http_requests_in_flight (\d+)/m)[1]);

test('clients that leave while their Redis reply is in flight are forgotten safely', async () => {
  const a = agent('support');
  const before = await orphaned();
  redis.proc.kill('SIGSTOP');
  try {
    const ctl = new AbortController();
    const calls = [], kept = [];
    for (let k = 0; k < 10; k++) {
      // POSTs with a body: the gateway sees these clients leave (lws reads their close)
      calls.push(heartbeat(a, { status: 'online' }, { signal: ctl.signal }).catch((e) => e));
      calls.push(call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth,
        body: { agent_id: a.sub }, signal: ctl.signal }).catch((e) => e));
      kept.push(assign('support')); // kept: answered once Redis resumes
    }
    // all 30 requests have been read and wait on the stopped Redis (the 31st in flight is
    // the /metrics request that reads the gauge); connections are not served in order
    await waitFor(async () => (await inFlight()) >= 31,
      { what: 'the 30 requests to reach the gateway' });
    ctl.abort();
    redis.proc.kill('SIGCONT');
    await Promise.all(calls);
    for (const r of await Promise.all(kept)) assert.ok([200, 409].includes(r.status), r.text);
  } finally {
    redis.proc.kill('SIGCONT');
  }
  assertOk(await heartbeat(a));
  await waitFor(async () => (await orphaned()) >= before + 20,
    { what: 'the 20 aborted requests to be counted as orphaned' });
  assert.strictEqual(gw.exitCode, null);
});

test('503 while Redis is down; served again once it is back', async () => {
  const a = agent('support');
  await redis.kill();
  const routes = [
    () => heartbeat(a),
    () => call('POST', '/api/v1/agent-status/offline', { headers: a.auth }),
    () => online(),
    () => dept('support'),
    () => one(a.sub),
    () => call('GET', '/api/v1/agent-status/stats', { headers: ADMIN().auth }),
    () => assign('support'),
    () => call('POST', '/api/v1/agent-status/release', { headers: ADMIN().auth,
      body: { agent_id: a.sub } }),
  ];
  for (const f of routes) assertError(await f(), 503, 'redis_unavailable');
  // validation still answers without Redis
  assertError(await one('bad*id'), 400, 'bad_request');
  await redis.start();
  await waitFor(async () => (await heartbeat(a)).status === 200, { what: 'the gateway to reconnect' });
  assertOk(await one(a.sub));
  assert.strictEqual(gw.exitCode, null);
});
