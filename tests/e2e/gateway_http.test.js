// `switchboard gateway` over real HTTP (fetch), against a private redis-server: every route,
// role and error code of SPEC §3; tokens forged every way the spec refuses; the rate limit
// under concurrency; Prometheus text checked by promtool; the full POST → agent → done flow;
// Redis killed, stalled and restarted with no half-written job; raw sockets for what fetch does
// not send (pipelining in every order, chunked bodies, HTTP/1.0, odd Authorization spacing).
// Tests run in order and share one gateway; each uses its own users so rate limits never leak
// between tests.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const { execFile, execFileSync } = require('node:child_process');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort, keptAliveSockets, postsInOneTurn } = require('./lib/harness');
const { request, assertError, rawExchange } = require('./lib/http');

const SECRET = 'e2e-gateway-secret';
const TYPE_RE = /^\d{1,16}-[0-9a-f]{8}$/;
let redis, rc, gw, base, port;
let userSeq = 0;

// A fresh identity: {pk, sub, token(role, extra)}.
function user(role = 'user', extra = {}) {
  const n = ++userSeq;
  const pk = `PK-${process.pid}-${n}`;
  const sub = `u-${n}`;
  const token = jwt.sign({ sub, publicKey: pk, role, ...extra }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, sub, token, auth: { authorization: `Bearer ${token}` } };
}

const call = (method, path, opts) => request(method, base + path, opts);

async function startGateway(env = {}) {
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance,report', ...env }, 'gateway');
  await g.waitForOutput(/listening on/);
  await waitFor(async () => {
    try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
  }, { what: 'gateway /readyz' });
  return g;
}

test.before(async () => {
  redis = await startRedis({ aof: true });
  rc = redis.client();
  rc.on('error', () => {}); // Redis is killed on purpose below
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  gw = await startGateway();
});

test.after(async () => {
  if (gw && gw.exitCode === null) gw.kill('SIGKILL');
  rc.disconnect();
  await redis.stop();
});

test('probes answer at the root and under /api and /api/v1', async () => {
  for (const prefix of ['', '/api', '/api/v1']) {
    const h = await call('GET', `${prefix}/healthz`);
    assert.strictEqual(h.status, 200);
    assert.strictEqual(h.json.status, 'ok');
    const r = await call('GET', `${prefix}/readyz`);
    assert.strictEqual(r.status, 200);
    assert.strictEqual(r.json.status, 'ready');
  }
});

test('POST /agent/rebalance queues the job atomically and announces it', async () => {
  const u = user();
  const sub = redis.client();
  const events = [];
  await sub.subscribe('agent:rebalance:events');
  sub.on('message', (_c, m) => events.push(JSON.parse(m)));
  const jobsBefore = Number(await rc.get(`metrics:agent:rebalance:counters:${today()}:jobs`) || 0);
  for (const prefix of ['/api/v1', '/api']) {
    const r = await call('POST', `${prefix}/agent/rebalance`, { headers: u.auth,
      body: { amount: 1000, priority: 'high' } });
    assert.strictEqual(r.status, 202, r.text);
    assert.deepStrictEqual(Object.keys(r.json).sort(), ['jobId', 'status']);
    assert.strictEqual(r.json.status, 'queued');
    assert.match(r.json.jobId, TYPE_RE);
    const id = r.json.jobId;
    const rec = JSON.parse(await rc.get(`agent:rebalance:job:${id}`));
    assert.strictEqual(rec.jobId, id);
    assert.strictEqual(rec.type, 'rebalance');
    assert.strictEqual(rec.status, 'queued');
    assert.deepStrictEqual(rec.user, { publicKey: u.pk, id: u.sub });
    assert.deepStrictEqual(rec.payload, { amount: 1000, priority: 'high' });
    assert.strictEqual(rec.attempts, 0);
    const ttl = await rc.ttl(`agent:rebalance:job:${id}`);
    assert.ok(ttl > 86000 && ttl <= 86400, `ttl ${ttl}`);
    assert.ok((await rc.lrange('agent:rebalance:jobs', 0, -1)).includes(id));
    assert.notStrictEqual(await rc.zscore(`agent:rebalance:user:${u.pk}`, id), null);
    await waitFor(() => events.find((e) => e.data.jobId === id), { what: 'created event' });
    const ev = events.find((e) => e.data.jobId === id);
    assert.deepStrictEqual(ev, { event: 'rebalance:created', room: `user:${u.pk}`, data: { jobId: id } });
  }
  const jobsAfter = Number(await rc.get(`metrics:agent:rebalance:counters:${today()}:jobs`));
  assert.strictEqual(jobsAfter - jobsBefore, 2);
  sub.disconnect();
});

test('POST after SCRIPT FLUSH: the gateway falls back from EVALSHA to EVAL; counters keep their TTL', async () => {
  const u = user();
  await rc.script('FLUSH');
  const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 7 } });
  assert.strictEqual(r.status, 202, r.text);
  const id = r.json.jobId;
  assert.ok(await rc.exists(`agent:rebalance:job:${id}`));
  assert.ok((await rc.lrange('agent:rebalance:jobs', 0, -1)).includes(id));
  // the second POST runs the cached script (EVALSHA) and lands the same way
  const r2 = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 8 } });
  assert.strictEqual(r2.status, 202, r2.text);
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${u.pk}`), 2);
  const userTtl = await rc.ttl(`agent:rebalance:user:${u.pk}`);
  assert.ok(userTtl > 86000 && userTtl <= 86400, `user index ttl ${userTtl}`);
  // daily counters get their 7-day EXPIRE when created, and keep it
  for (const name of ['jobs', 'rate_hits']) {
    const ttl = await rc.ttl(`metrics:agent:rebalance:counters:${today()}:${name}`);
    assert.ok(ttl > 7 * 86400 - 600 && ttl <= 7 * 86400, `${name} ttl ${ttl}`);
  }
  const created = await rc.xrevrange('agent:stream:job.created', '+', '-', 'COUNT', 5);
  const entry = created.find(([, f]) => JSON.parse(f[f.indexOf('data') + 1]).jobId === r2.json.jobId);
  assert.ok(entry, 'job.created audit entry');
  assert.deepStrictEqual(entry[1].filter((_, i) => i % 2 === 0), ['event_id', 'event_type', 'timestamp', 'data']);
});

test('bad payloads get 400 naming the field and change nothing', async () => {
  const u = user();
  const len = await rc.llen('agent:rebalance:jobs');
  const cases = [
    [{}, /amount/], [{ amount: 0 }, /amount/], [{ amount: -5 }, /amount/],
    [{ amount: '100' }, /amount/], [{ amount: null }, /amount/],
    [{ amount: 10, priority: 'urgent' }, /priority/], [{ amount: 10, priority: 3 }, /priority/],
    [[1, 2], /JSON object/], ['"text"', /JSON object/],
  ];
  for (const [body, needle] of cases) {
    const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth,
      body: typeof body === 'string' ? body : JSON.stringify(body), raw: true });
    assertError(r, 400, 'bad_request', needle);
  }
  for (const raw of ['{"amount": 1', 'not json', '', '{"amount":1e999}x', '{"a":' + '['.repeat(100) + ']'.repeat(100) + '}']) {
    const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: raw, raw: true });
    assert.strictEqual(r.status, 400, `${raw}: ${r.text}`);
    assert.strictEqual(r.json.success, false);
  }
  const inf = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: '{"amount":1e999}', raw: true });
  assertError(inf, 400, 'bad_request', /amount/);
  // a name twice in an object, at any depth: cJSON would check the first, while the stored
  // record kept both and an agent in JavaScript or Python read the last
  for (const [type, raw, name] of [
    ['rebalance', '{"amount":1000,"amount":-5,"priority":"high","priority":{"x":1}}', 'amount'],
    ['rebalance', '{"amount":5,"meta":{"a":1,"b":{"a":2,"a":3}}}', 'a'],
    ['rebalance', '{"amount":5,"list":[{"k":1},{"k":2,"k":3}]}', 'k'],
    ['report', '{"x":1,"x":2}', 'x']]) {
    const r = await call('POST', `/api/v1/agent/${type}`, { headers: u.auth, body: raw, raw: true });
    assertError(r, 400, 'bad_request', new RegExp(`^duplicate key "${name}"`));
  }
  assert.strictEqual(await rc.llen('agent:rebalance:jobs'), len);
  assert.strictEqual(await rc.exists(`metrics:agent:rebalance:rate:${u.sub}`), 0);
  assert.strictEqual(await rc.exists(`agent:rebalance:user:${u.pk}`), 0);
  // other configured types take any object
  const ok = await call('POST', '/api/v1/agent/report', { headers: u.auth, body: { anything: [1] } });
  assert.strictEqual(ok.status, 202, ok.text);
});

// An HS256 token over exactly these header and payload texts (jsonwebtoken re-encodes JSON).
function signRaw(header, payload) {
  const crypto = require('node:crypto');
  const hp = `${Buffer.from(header).toString('base64url')}.${Buffer.from(payload).toString('base64url')}`;
  return `${hp}.${crypto.createHmac('sha256', SECRET).update(hp).digest('base64url')}`;
}

test('tokens: missing, none, HS512, expired, not yet valid, tampered, wrong key, a claim twice, crit are 401', async () => {
  const claims = { sub: 'u-x', publicKey: 'PK-x', role: 'admin' };
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const good = jwt.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 60 });
  const [h, p, s] = good.split('.');
  const tokens = {
    none: `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, exp: now() + 60 })}.`,
    noneSigned: `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, exp: now() + 60 })}.${s}`,
    hs512: jwt.sign(claims, SECRET, { algorithm: 'HS512', expiresIn: 60 }),
    hs384: jwt.sign(claims, SECRET, { algorithm: 'HS384', expiresIn: 60 }),
    expired: jwt.sign({ ...claims, exp: now() - 10 }, SECRET, { algorithm: 'HS256' }),
    noExp: jwt.sign(claims, SECRET, { algorithm: 'HS256' }),
    notBefore: jwt.sign(claims, SECRET, { algorithm: 'HS256', expiresIn: 600, notBefore: 300 }),
    tampered: `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url')), role: 'admin', publicKey: 'PK-other' })}.${s}`,
    badSig: `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`,
    wrongKey: jwt.sign(claims, 'not-the-secret', { algorithm: 'HS256', expiresIn: 60 }),
    badRole: jwt.sign({ ...claims, role: 'root' }, SECRET, { algorithm: 'HS256', expiresIn: 60 }),
    garbage: 'abc.def',
    // signed right, but read differently by different readers: libjwt kept the last "role"
    twiceRole: signRaw('{"alg":"HS256","typ":"JWT"}',
      `{"sub":"u-x","publicKey":"PK-x","role":"user","role":"admin","exp":${now() + 60}}`),
    crit: signRaw('{"alg":"HS256","crit":["b64"],"b64":false}', JSON.stringify({ ...claims, exp: now() + 60 })),
  };
  const expect = { none: /signed JWT|HS256/, noneSigned: /HS256/, hs512: /HS256/, hs384: /HS256/,
    expired: /expired/, noExp: /exp/, notBefore: /nbf/, tampered: /signature/, badSig: /signature/,
    wrongKey: /signature/, badRole: /role/, garbage: /signed JWT/, twiceRole: /"role" twice/,
    crit: /crit/ };
  for (const [name, token] of Object.entries(tokens)) {
    for (const [method, path, body] of [['POST', '/api/v1/agent/rebalance', { amount: 1 }],
      ['GET', '/api/v1/agent/rebalance/metrics'], ['GET', '/api/v1/rebalance/1-a']]) {
      const r = await call(method, path, { headers: { authorization: `Bearer ${token}` }, body });
      assertError(r, 401, 'unauthorized', expect[name]);
    }
  }
  assertError(await call('POST', '/api/v1/agent/rebalance', { body: { amount: 1 } }), 401, 'unauthorized', /bearer/i);
  assertError(await call('GET', '/api/v1/agent/rebalance/jobs', { headers: { authorization: `Basic ${good}` } }),
    401, 'unauthorized', /bearer/i);
  assertError(await call('GET', '/api/v1/agent/rebalance/jobs', { headers: { authorization: 'Bearer ' } }),
    401, 'unauthorized');
  assert.strictEqual((await call('GET', '/api/v1/agent/rebalance/metrics',
    { headers: { authorization: `Bearer ${good}` } })).status, 200);
});

test('roles: user and agent may create, only admin reads metrics; owners and admins read jobs', async () => {
  const alice = user('user'), bob = user('user'), agent = user('agent'), admin = user('admin');
  const a = await call('POST', '/api/v1/agent/rebalance', { headers: alice.auth, body: { amount: 7 } });
  assert.strictEqual(a.status, 202);
  const ag = await call('POST', '/api/v1/agent/rebalance', { headers: agent.auth, body: { amount: 8 } });
  assert.strictEqual(ag.status, 202);
  const id = a.json.jobId;
  for (const path of [`/api/v1/agent/rebalance/${id}`, `/api/v1/rebalance/${id}`, `/api/rebalance/${id}`]) {
    const mine = await call('GET', path, { headers: alice.auth });
    assert.strictEqual(mine.status, 200);
    assert.strictEqual(mine.json.jobId, id);
    assert.strictEqual(mine.json.user.publicKey, alice.pk);
    assertError(await call('GET', path, { headers: bob.auth }), 404, 'not_found');
    assert.strictEqual((await call('GET', path, { headers: admin.auth })).status, 200);
  }
  // absent and other-owned look the same
  assertError(await call('GET', '/api/v1/rebalance/1731304200000-a7f3e2k', { headers: alice.auth }), 404, 'not_found');
  assertError(await call('GET', '/api/v1/agent/rebalance/metrics', { headers: alice.auth }), 403, 'forbidden', /user/);
  assertError(await call('GET', '/api/v1/agent/rebalance/metrics', { headers: agent.auth }), 403, 'forbidden', /agent/);
  // a token without publicKey cannot own jobs
  const anon = jwt.sign({ sub: 'x', role: 'user' }, SECRET, { algorithm: 'HS256', expiresIn: 60 });
  assertError(await call('POST', '/api/v1/agent/rebalance', { headers: { authorization: `Bearer ${anon}` },
    body: { amount: 1 } }), 403, 'forbidden', /publicKey/);
  // identity comes from the token, never from the body
  const spoof = await call('POST', '/api/v1/agent/rebalance', { headers: bob.auth,
    body: { amount: 1, user: { publicKey: alice.pk }, publicKey: alice.pk } });
  assert.strictEqual(spoof.status, 202);
  const rec = JSON.parse(await rc.get(`agent:rebalance:job:${spoof.json.jobId}`));
  assert.strictEqual(rec.user.publicKey, bob.pk);
  assert.strictEqual(await rc.zscore(`agent:rebalance:user:${alice.pk}`, spoof.json.jobId), null);
});

test('404, 405 with Allow, bad ids, bad types, unknown types', async () => {
  const u = user();
  assertError(await call('GET', '/api/v1/nope', { headers: u.auth }), 404, 'not_found');
  assertError(await call('GET', '/nope'), 404, 'not_found');
  assertError(await call('GET', '/agent/rebalance/jobs', { headers: u.auth }), 404, 'not_found'); // no prefix
  for (const [method, path, allow] of [['GET', '/api/v1/agent/rebalance', 'POST'],
    ['DELETE', '/api/v1/agent/rebalance', 'POST'], ['PUT', '/api/v1/agent/rebalance/jobs', 'GET, HEAD'],
    ['POST', '/api/v1/rebalance/1-a', 'GET, HEAD'], ['PATCH', '/healthz', 'GET, HEAD'],
    ['POST', '/metrics', 'GET, HEAD']]) {
    const r = await call(method, path, { headers: u.auth });
    assertError(r, 405, 'method_not_allowed');
    assert.strictEqual(r.headers.get('allow'), allow, `${method} ${path}`);
  }
  for (const bad of ['1731304200000_a7f3e2c1', 'abc', '12345678901234567-a', '1-' + 'a'.repeat(33),
    '1-ABC', '1-', '-a', '1-a%20b']) {
    assertError(await call('GET', `/api/v1/rebalance/${bad}`, { headers: u.auth }), 400, 'bad_request', /jobId/);
    assertError(await call('GET', `/api/v1/agent/rebalance/${bad}`, { headers: u.auth }), 400, 'bad_request', /jobId/);
  }
  assertError(await call('POST', '/api/v1/agent/Rebalance', { headers: u.auth, body: { amount: 1 } }), 400, 'bad_request', /type/);
  assertError(await call('POST', '/api/v1/agent/unknowntype', { headers: u.auth, body: { amount: 1 } }), 404, 'not_found', /unknowntype/);
  assertError(await call('GET', '/api/v1/agent/unknowntype/jobs', { headers: u.auth }), 404, 'not_found');
});

// A query that does not fit the gateway's buffer is refused, not read as if it had no arguments
// (a polling GET with a 1.1 KB sid used to open a new session).
test('an over-long query string gets 414 and opens nothing', async () => {
  const u = user();
  const opened = async () => Number((await (await fetch(`${base}/metrics`)).text())
    .match(/^gateway_engineio_opened_total (\d+)$/m)[1]);
  const before = await opened();
  const sid = 'x'.repeat(1100);
  assertError(await call('GET', `/socket.io/?EIO=4&transport=polling&sid=${sid}`), 414, 'uri_too_long');
  // every argument fits, all of them do not (lws itself drops a query of over ~64 arguments)
  assertError(await call('GET', `/socket.io/?EIO=4&transport=polling&a=${'p'.repeat(600)}` +
    `&b=${'q'.repeat(600)}`), 414, 'uri_too_long');
  assertError(await call('GET', `/api/v1/agent/rebalance/jobs?limit=5&pad=${'p'.repeat(1500)}`,
    { headers: u.auth }), 414, 'uri_too_long');
  assert.strictEqual(await opened(), before);
  const ok = await call('GET', '/api/v1/agent/rebalance/jobs?limit=5', { headers: u.auth });
  assert.strictEqual(ok.status, 200, ok.text);
});

test('bodies over 64 KiB get 413 and the connection stays usable', async () => {
  const u = user();
  const big = JSON.stringify({ amount: 1, pad: 'x'.repeat(70 * 1024) });
  const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: big, raw: true });
  assertError(r, 413, 'payload_too_large', /65536/);
  const justUnder = JSON.stringify({ amount: 1, pad: 'x'.repeat(60 * 1024) });
  assert.strictEqual((await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: justUnder, raw: true })).status, 202);
  // 10 MB announced: refused without reading it all (the connection may be cut)
  try {
    const huge = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: 'x'.repeat(10 << 20), raw: true });
    assert.strictEqual(huge.status, 413);
  } catch (e) {
    assert.match(String(e.cause && e.cause.code || e), /EPIPE|ECONNRESET|UND_ERR_SOCKET|other side closed|fetch failed/);
  }
  assert.strictEqual((await call('GET', '/healthz')).status, 200);
  assert.strictEqual(await rc.exists(`agent:rebalance:user:${u.pk}`), 1);
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${u.pk}`), 1);
});

test('GET /agent/{type}/jobs lists the caller\'s jobs newest first, limit validated', async () => {
  const u = user(), other = user();
  const ids = [];
  for (let i = 0; i < 4; i++) {
    const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: i + 1 } });
    assert.strictEqual(r.status, 202);
    ids.push(r.json.jobId);
    await new Promise((res) => setImmediate(res));
  }
  await call('POST', '/api/v1/agent/rebalance', { headers: other.auth, body: { amount: 99 } });
  const all = await call('GET', '/api/v1/agent/rebalance/jobs', { headers: u.auth });
  assert.strictEqual(all.status, 200);
  assert.strictEqual(all.json.success, true);
  assert.strictEqual(all.json.count, 4);
  assert.deepStrictEqual(all.json.jobs.map((j) => j.payload.amount), [4, 3, 2, 1]);
  assert.ok(all.json.jobs.every((j) => j.user.publicKey === u.pk));
  const two = await call('GET', '/api/agent/rebalance/jobs?limit=2', { headers: u.auth });
  assert.deepStrictEqual(two.json.jobs.map((j) => j.jobId), [ids[3], ids[2]]);
  // an expired record is skipped, not an error
  await rc.del(`agent:rebalance:job:${ids[3]}`);
  const after = await call('GET', '/api/v1/agent/rebalance/jobs?limit=2', { headers: u.auth });
  assert.deepStrictEqual(after.json.jobs.map((j) => j.jobId), [ids[2]]);
  for (const bad of ['0', '101', 'abc', '-1', '1.5', '', '99999999999']) {
    assertError(await call('GET', `/api/v1/agent/rebalance/jobs?limit=${bad}`, { headers: u.auth }),
      400, 'bad_request', /limit/);
  }
  const none = await call('GET', '/api/v1/agent/report/jobs', { headers: u.auth });
  assert.deepStrictEqual(none.json, { success: true, count: 0, jobs: [] });
});

test('a large answer reaches a slow reader whole, and its kept-alive connection goes on', async () => {
  // answers made in a Redis reply are written at once; what the socket does not take, lws
  // keeps and sends as the reader drains, and only then is the next request served
  const u = user();
  const pad = 'x'.repeat(60000);
  for (let i = 0; i < 8; i++) {
    const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 1, priority: 'high', pad } });
    assert.strictEqual(r.status, 202);
  }
  const path = '/api/v1/agent/rebalance/jobs?limit=100';
  const out = execFileSync('python3', [`${__dirname}/lib/slow_reader.py`, String(port), u.token, path, path],
    { encoding: 'utf8', timeout: 60000 });
  const answers = out.trim().split('\n').map((l) => JSON.parse(l));
  assert.strictEqual(answers.length, 2);
  for (const a of answers) {
    assert.strictEqual(a.status, 200);
    assert.ok(a.length > 480000, `answer of ${a.length} bytes`);
    assert.strictEqual(a.received, a.length);
    assert.strictEqual(a.count, 8);
  }
});

test('GET /agent/{type}/metrics returns the summary for 1-30 days', async () => {
  const admin = user('admin');
  const day = today();
  await rc.set(`metrics:agent:report:counters:${day}:jobs`, 40);
  await rc.set(`metrics:agent:report:counters:${day}:failed`, 3);
  await rc.set(`metrics:agent:report:counters:${day}:rate_hits`, 55);
  await rc.set(`metrics:agent:report:counters:${day}:rate_blocked`, 5);
  await rc.set(`metrics:agent:report:counters:${dayBefore(2)}:jobs`, 2);
  await rc.zadd('metrics:agent:report:execution_times', ...[100, 'a', 200, 'b', 300, 'c', 400, 'd']);
  const r = await call('GET', '/api/v1/agent/report/metrics', { headers: admin.auth });
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.json.totalJobs, 42);
  assert.strictEqual(r.json.failedJobs, 3);
  assert.strictEqual(r.json.avgExecutionTime, 250);
  assert.strictEqual(r.json.p95ExecutionTime, 400);
  assert.deepStrictEqual(r.json.rateLimit, { hits: 55, blocked: 5 });
  // what the dashboard's charts draw: counters per day (oldest first), execution-time histogram
  assert.strictEqual(r.json.daily.length, 7);
  assert.deepStrictEqual(r.json.daily[6], { date: day, jobs: 40, done: 0, failed: 3 });
  assert.deepStrictEqual(r.json.daily[4], { date: dayBefore(2), jobs: 2, done: 0, failed: 0 });
  const ex = r.json.executionTimes;
  assert.deepStrictEqual([ex.count, ex.avg, ex.p50, ex.p95, ex.max], [4, 250, 200, 400, 400]);
  assert.deepStrictEqual(ex.histogram.map((b) => b.le),
    [10, 50, 100, 250, 500, 1000, 5000, 10000, 30000, 60000, null]);
  assert.deepStrictEqual(ex.histogram.map((b) => b.count), [0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0]);
  const one = await call('GET', '/api/v1/agent/report/metrics?days=1', { headers: admin.auth });
  assert.strictEqual(one.json.totalJobs, 40);
  assert.deepStrictEqual(one.json.daily.map((d) => d.date), [day]);
  const among = await call('GET', '/api/v1/agent/report/metrics?x=1&days=1&y=', { headers: admin.auth });
  assert.strictEqual(among.json.days, 1);
  assert.strictEqual(among.json.totalJobs, 40);
  assert.strictEqual((await call('GET', '/api/agent/report/metrics?days=30', { headers: admin.auth })).status, 200);
  for (const bad of ['0', '31', 'x', '-3', '7d']) {
    assertError(await call('GET', `/api/v1/agent/report/metrics?days=${bad}`, { headers: admin.auth }),
      400, 'bad_request', /days/);
  }
});

// Group commit: POSTs that reach the gateway in one loop turn go to Redis as one script call,
// each decided as if alone. The gateway is stopped (SIGSTOP) while 16 kept-alive connections
// each write a POST, so that they are all readable in its next poll.
test('group commit: one loop turn of POSTs is one script call, with one-by-one answers', async () => {
  const a = user();
  const others = Array.from({ length: 4 }, () => user());
  const senders = [...Array(12).fill(a), ...others];
  const socks = await keptAliveSockets(port, senders.length);
  const scriptCalls = async () => {
    const stats = await rc.info('commandstats');
    return ['evalsha', 'eval'].reduce((n, c) =>
      n + Number((new RegExp(`cmdstat_${c}:calls=(\\d+)`).exec(stats) || [0, 0])[1]), 0);
  };
  const calls0 = await scriptCalls();
  const res = await postsInOneTurn(gw, socks, senders.map((u, i) => ({ path: '/api/v1/agent/rebalance',
    authorization: `Bearer ${u.token}`, body: JSON.stringify({ amount: i + 1 }) })));
  for (const sk of socks) sk.destroy();
  const calls = (await scriptCalls()) - calls0;
  assert.ok(calls >= 1 && calls <= 3, `16 POSTs in one loop turn took ${calls} script calls`);
  const mine = res.slice(0, 12).map((r) => r.status).sort();
  assert.deepStrictEqual(mine, [...Array(10).fill(202), 429, 429]);
  for (const r of res.slice(12)) assert.strictEqual(r.status, 202, r.body);
  assert.strictEqual(await rc.zcard(`metrics:agent:rebalance:rate:${a.sub}`), 10);
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${a.pk}`), 10);
  for (const r of res.filter((x) => x.status === 202)) {
    const id = JSON.parse(r.body).jobId;
    assert.ok(await rc.exists(`agent:rebalance:job:${id}`), `record of ${id}`);
    assert.strictEqual(await rc.llen(`agent:rebalance:hist:${id}`), 4);
  }
});

test('rate limit: 50 concurrent POSTs with limit 10 admit exactly 10', async () => {
  const u = user();
  const day = today();
  const hits0 = Number(await rc.get(`metrics:agent:rebalance:counters:${day}:rate_hits`) || 0);
  const blocked0 = Number(await rc.get(`metrics:agent:rebalance:counters:${day}:rate_blocked`) || 0);
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: i + 1 } })));
  const byStatus = {};
  for (const r of results) byStatus[r.status] = (byStatus[r.status] || 0) + 1;
  assert.deepStrictEqual(byStatus, { 202: 10, 429: 40 });
  for (const r of results.filter((x) => x.status === 429)) {
    assertError(r, 429, 'rate_limited', /10 job requests per 60 s/);
    const ra = Number(r.headers.get('retry-after'));
    assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 60, `retry-after ${ra}`);
  }
  const key = `metrics:agent:rebalance:rate:${u.sub}`;
  assert.strictEqual(await rc.zcard(key), 10);
  const pttl = await rc.pttl(key);
  assert.ok(pttl > 0 && pttl <= 60000, `pttl ${pttl}`);
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${u.pk}`), 10);
  assert.strictEqual(Number(await rc.get(`metrics:agent:rebalance:counters:${day}:rate_hits`)) - hits0, 50);
  assert.strictEqual(Number(await rc.get(`metrics:agent:rebalance:counters:${day}:rate_blocked`)) - blocked0, 40);
  // the window slides: with a 1 s window the user is admitted again once it has passed
  const g2port = await freePort();
  const g2 = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET, PORT: String(g2port),
    BIND: '127.0.0.1', RATE_LIMIT: '2', RATE_WINDOW: '1' }, 'gateway2');
  try {
    await g2.waitForOutput(/listening on/);
    const v = user();
    const post = async () => (await fetch(`http://127.0.0.1:${g2port}/api/v1/agent/rebalance`, {
      method: 'POST', headers: { ...v.auth, 'content-type': 'application/json' },
      body: '{"amount":1}' })).status;
    await waitFor(async () => (await post()) === 202, { what: 'gateway2 up' });
    assert.strictEqual(await post(), 202);
    assert.strictEqual(await post(), 429);
    await waitFor(async () => (await post()) === 202, { timeoutMs: 3000, intervalMs: 100, what: 'window to slide' });
  } finally {
    g2.kill('SIGTERM');
    assert.deepStrictEqual(await g2.exited, { code: 0, signal: null });
  }
});

test('/metrics is valid Prometheus text (promtool) with the request series', async () => {
  const r = await fetch(`${base}/metrics`);
  assert.strictEqual(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  promtool(text);
  assert.match(text, /^gateway_http_requests_total\{route="\/agent\/\{type\}",method="POST",code="202"\} \d+$/m);
  assert.match(text, /^gateway_http_requests_total\{route="\/agent\/\{type\}",method="POST",code="429"\} 4\d$/m);
  assert.match(text, /^gateway_http_request_duration_seconds_bucket\{route="\/agent\/\{type\}",le="\+Inf"\} \d+$/m);
  assert.match(text, /^gateway_redis_connected 1$/m);
  assert.match(text, /^gateway_redis_reconnects_total 0$/m);
  assert.match(text, /^gateway_rate_limited_total \d+$/m);
  // the rate-limit test sent 50 POSTs with one token: verified once, then answered from cache
  assert.match(text, /^gateway_token_cache_hits_total [1-9]\d+$/m);
  assert.match(text, /^gateway_token_cache_misses_total [1-9]\d*$/m);
  const api = await fetch(`${base}/api/v1/metrics`);
  assert.strictEqual(api.status, 200);
});

test('full flow: POST, `switchboard agent` runs it, GET shows done; agent /metrics valid', async () => {
  const u = user();
  const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 1000, priority: 'low' } });
  assert.strictEqual(r.status, 202);
  const mport = await freePort();
  const agent = startSwitchboard(['agent', '--metrics-port', String(mport)],
    { REDIS_URL: redis.url, BIND: '127.0.0.1' }, 'agent');
  try {
    const done = await waitFor(async () => {
      const g = await call('GET', `/api/v1/rebalance/${r.json.jobId}`, { headers: u.auth });
      return g.json && g.json.status === 'done' ? g.json : null;
    }, { timeoutMs: 20000, what: 'job done' });
    assert.strictEqual(done.result.fee, 20);
    assert.strictEqual(done.result.remainingAmount, 980);
    assert.strictEqual(done.attempts, 1);
    const text = await waitFor(async () => {
      const t = await (await fetch(`http://127.0.0.1:${mport}/metrics`)).text();
      return /agent_jobs_processed_total\{status="done"\} [1-9]/.test(t) ? t : null;
    }, { what: 'agent metrics' });
    promtool(text);
    assert.match(text, /^agent_job_duration_seconds_bucket\{status="done",le="60"\} [1-9]\d*$/m);
    assert.match(text, /^agent_job_duration_seconds_bucket\{status="done",le="\+Inf"\} [1-9]\d*$/m);
    assert.match(text, /^agent_job_duration_seconds_count\{status="failed"\} 0$/m);
    assert.match(text, /^agent_job_retries_total 0$/m);
    assert.match(text, /^agent_jobs_recovered_total \d+$/m);
    assert.strictEqual((await fetch(`http://127.0.0.1:${mport}/nope`)).status, 404);
  } finally {
    agent.kill('SIGTERM');
    assert.deepStrictEqual(await agent.exited, { code: 0, signal: null });
  }
});

test('garbage on the socket never hurts the gateway', async () => {
  const junk = ['GARBAGE\r\n\r\n', 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
    '\x00\x01\x02\xff\xfe'.repeat(100), `GET /${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(40000)}\r\n\r\n`,
    'POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"amount"'];
  for (const j of junk) {
    await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(j));
      s.on('data', () => {});
      s.on('error', resolve);
      s.on('close', resolve);
      s.setTimeout(3000, () => s.destroy());
    });
  }
  assert.strictEqual((await call('GET', '/healthz')).status, 200);
  assert.strictEqual(gw.exitCode, null);
});

// lws 4.1 answered every request line it could not parse with an HTML 403 (and held a CONNECT
// open until its timeout); a token of 8-16 KB read as "missing bearer token". Now JSON errors
// with the status that says why, connection: close, and the connection closed.
test('unparseable requests get JSON 400/501/505, an over-long Authorization 431', async () => {
  for (const [req, status, code, needle] of [
    ['GARBAGE\r\n\r\n', 400, 'bad_request', /not HTTP\/1\.1/],
    ['\x00\x01\x02\x7f\r\n\r\n', 400, 'bad_request', /not HTTP\/1\.1/],
    ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 505, 'http_version_not_supported', /HTTP\/2/],
    ['BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 501, 'not_implemented', /BREW/],
    ['TRACE /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 501, 'not_implemented', /TRACE/],
    ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 501, 'not_implemented', /CONNECT/]]) {
    const x = await rawExchange(port, [req], { timeoutMs: 2000 });
    assert.deepStrictEqual(x.statuses, [status], `${JSON.stringify(req)}: ${x.text}`);
    assert.match(x.text, /\r\ncontent-type: application\/json\r\n/);
    assert.match(x.text, /\r\nconnection: close\r\n/i);
    assert.deepStrictEqual(Object.keys(x.last).sort(), ['error', 'message', 'success']);
    assert.strictEqual(x.last.error, code);
    assert.match(x.last.message, needle);
    assert.ok(x.closed, `${JSON.stringify(req)}: closed by the gateway`);
  }
  for (const size of [9000, 16000, 30000]) {
    const r = await call('GET', '/api/v1/agent/rebalance/jobs', { headers: { authorization: `Bearer ${'a'.repeat(size)}` } });
    assertError(r, 431, 'request_header_too_large', /Authorization/);
  }
  assert.strictEqual((await call('GET', '/healthz')).status, 200);
});

// Pipelining in every order on one connection, with a user whose jobs are counted at the end.
// lws 4.1 mishandles a request with a body pipelined behind another (it handed over the wrong
// bytes as the body, then looped inside one call and froze the whole gateway) and any request
// pipelined behind one with a body (it repeats the body's completion): the gateway refuses the
// first with 400 and closes, and answers the second's predecessor then closes. After each
// exchange /healthz must answer at once, and no job may come from a pipelined body.
test('pipelined requests in every order: answered or refused, never a hang or a spin', async () => {
  const u = user();
  const body = (n) => `{"amount":${n}}`;
  const postHead = (n) => `POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: Bearer ${u.token}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${body(n).length}\r\n\r\n`;
  const post = (n) => postHead(n) + body(n);
  const get = (p = '/healthz') => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
  const queued = await rc.llen('agent:rebalance:jobs');
  const afterEach = async (what) => {
    const t0 = Date.now();
    const r = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2000) });
    assert.strictEqual(r.status, 200, `${what}: /healthz afterwards`);
    assert.ok(Date.now() - t0 < 2000, `${what}: /healthz took ${Date.now() - t0} ms`);
  };
  const refusedAsPipelined = (x, what) => {
    assert.deepStrictEqual(x.statuses, [200, 400], `${what}: ${x.text}`);
    assert.strictEqual(x.last.error, 'bad_request', what);
    assert.match(x.last.message, /pipelined/, what);
    assert.match(x.text.slice(x.text.lastIndexOf('HTTP/1.1')), /\r\nconnection: close\r\n/i, what);
    assert.ok(x.closed, `${what}: closed by the gateway`);
  };
  // GET+GET+GET: answered in order on a connection kept open until the last asks to close
  let x = await rawExchange(port, [get('/healthz') + get('/readyz') +
    'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']);
  assert.deepStrictEqual(x.statuses, [200, 200, 200], x.text);
  assert.ok(x.text.indexOf('"status":"ok"') < x.text.indexOf('"status":"ready"'));
  assert.ok(x.closed);
  await afterEach('GET+GET+GET');
  // GET+POST: the POST's body cannot be trusted: 400 and close, no job
  refusedAsPipelined(await rawExchange(port, [get() + post(31)]), 'GET+POST');
  await afterEach('GET+POST');
  // GET+POST with the body split across writes: the rest of the body is sent only after the
  // GET's answer, i.e. once the gateway holds the POST's head in its buffer
  refusedAsPipelined(await rawExchange(port, [get() + postHead(41) + body(41).slice(0, 5),
    { afterAnswers: 1, data: body(41).slice(5) }]), 'GET+POST split');
  await afterEach('GET+POST split');
  // GET+GET+POST behind a Redis-answered GET: the same refusal, after both GETs
  x = await rawExchange(port, [get('/readyz') + get() + post(51)]);
  assert.deepStrictEqual(x.statuses, [200, 200, 400], x.text);
  assert.ok(x.closed);
  await afterEach('GET+GET+POST');
  // POST+GET and POST+POST: the POST is answered (from its Redis reply) with connection: close
  // and the connection closes; what was pipelined behind it is never read
  for (const [what, second, amount] of [['POST+GET', get(), 11], ['POST+POST', post(22), 21]]) {
    x = await rawExchange(port, [post(amount) + second]);
    assert.deepStrictEqual(x.statuses, [202], `${what}: ${x.text}`);
    assert.match(x.text, /\r\nconnection: close\r\n/i, what);
    assert.ok(x.closed, `${what}: closed by the gateway`);
    await afterEach(what);
  }
  // a POST without Content-Length (lws would read the next request as its body): answered
  // with connection: close, then closed
  x = await rawExchange(port, [`POST /api/v1/agent-status/offline HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: Bearer ${u.token}\r\n\r\n${get()}`]);
  assert.deepStrictEqual(x.statuses, [403], x.text);
  assert.match(x.text, /\r\nconnection: close\r\n/i);
  assert.ok(x.closed);
  await afterEach('POST without length + GET');
  // only the two POSTs that came first on their connection made jobs
  const listed = await call('GET', '/api/v1/agent/rebalance/jobs', { headers: u.auth });
  assert.deepStrictEqual(listed.json.jobs.map((j) => j.payload.amount), [21, 11]);
  assert.strictEqual(await rc.llen('agent:rebalance:jobs'), queued + 2);
  const cpuTicks = () => { const f = fs.readFileSync(`/proc/${gw.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]); };
  const t0 = cpuTicks();
  await new Promise((r) => setTimeout(r, 500)); // a measurement window, not a wait
  assert.ok(cpuTicks() - t0 < 25, 'the gateway is idle, not spinning');
});

// lws 4.1 hands a chunked body over with its framing and never reports its end: the client
// used to wait for ever. Now it is refused at once, on the API and on Socket.IO's polling POST.
test('Transfer-Encoding bodies get 411 at once, with connection: close, and change nothing', async () => {
  const u = user();
  const queued = await rc.llen('agent:rebalance:jobs');
  const curl = (args) => new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '-i', '-m', '5', ...args], (err, stdout, stderr) =>
      (err ? reject(new Error(`curl: ${err.message} ${stderr}`)) : resolve(stdout)));
  });
  for (const [url, headers, data] of [
    [`${base}/api/v1/agent/rebalance`, ['-H', `authorization: Bearer ${u.token}`,
      '-H', 'content-type: application/json'], '{"amount":5}'],
    [`${base}/socket.io/?EIO=4&transport=polling&sid=nosuchsession`, [], '40']]) {
    const t0 = Date.now();
    const out = await curl(['-X', 'POST', ...headers, '-H', 'Transfer-Encoding: chunked',
      '--data-binary', data, url]);
    assert.ok(Date.now() - t0 < 2000, `answered in ${Date.now() - t0} ms`);
    assert.match(out, /^HTTP\/1\.1 411 Length Required\r\n/);
    assert.match(out, /\r\nconnection: close\r\n/i);
    const json = JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4));
    assert.deepStrictEqual(Object.keys(json).sort(), ['error', 'message', 'success']);
    assert.strictEqual(json.success, false);
    assert.strictEqual(json.error, 'length_required');
    assert.match(json.message, /Content-Length/);
  }
  // identity is no transfer coding: served as usual
  const ok = await curl(['-X', 'POST', '-H', `authorization: Bearer ${u.token}`, '-H',
    'content-type: application/json', '-H', 'Transfer-Encoding: identity', '--data-binary',
    '{"amount":6}', `${base}/api/v1/agent/rebalance`]);
  assert.match(ok, /^HTTP\/1\.1 202 /);
  assert.strictEqual(await rc.llen('agent:rebalance:jobs'), queued + 1);
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${u.pk}`), 1);
});

// A connection that is not kept alive and whose answer comes from a Redis reply used to stay
// open until lws's next timer check (10-30 s): it must close as soon as the answer is out.
test('HTTP/1.0 and connection: close answers close the connection at once and say connection: close', async () => {
  const u = user();
  const b = '{"amount":3}';
  for (const req of ['GET /readyz HTTP/1.0\r\n\r\n',
    'GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n',
    `GET /api/v1/agent/rebalance/jobs HTTP/1.0\r\nAuthorization: Bearer ${u.token}\r\n\r\n`,
    `POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${u.token}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n${b}`]) {
    const x = await rawExchange(port, [req], { timeoutMs: 1000 });
    assert.strictEqual(x.statuses.length, 1, x.text);
    assert.ok([200, 202].includes(x.statuses[0]), x.text);
    assert.ok(x.closed, 'closed by the gateway');
    // RFC 9112 §9.6: the answer says so (a keep-alive client would reuse a dead socket)
    assert.match(x.text, /\r\nconnection: close\r\n/i, x.text);
  }
  // so do the refusals after which the gateway closes
  for (const [req, status] of [[`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n` +
    `Content-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{"amount":`, 413],
  [`GET /api/v1/healthz?a=${'a'.repeat(1100)}&b=${'b'.repeat(100)} HTTP/1.1\r\nHost: x\r\n\r\n`, 414],
  ['POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n', 411]]) {
    const x = await rawExchange(port, [req], { timeoutMs: 1000 });
    assert.deepStrictEqual(x.statuses, [status], x.text);
    assert.ok(x.closed, `${status}: closed by the gateway`);
    assert.match(x.text, /\r\nconnection: close\r\n/i, x.text);
  }
});

// RFC 7235: "Bearer" 1*SP token; spaces or tabs around the token are tolerated, not part of it.
test('Authorization: Bearer with tabs or extra spaces around the token is accepted', async () => {
  const u = user();
  for (const value of [`Bearer  ${u.token}`, `Bearer\t${u.token}`, `Bearer ${u.token} `,
    `Bearer ${u.token}\t`, `bearer \t${u.token} \t `]) {
    const x = await rawExchange(port, [`GET /api/v1/agent/rebalance/jobs HTTP/1.1\r\nHost: x\r\n` +
      `Authorization: ${value}\r\n\r\n`], { answers: 1 });
    assert.deepStrictEqual(x.statuses, [200], `${JSON.stringify(value)}: ${x.text}`);
  }
  for (const value of ['Bearer', 'Bearer \t ', `Bearer${u.token}`, `Basic ${u.token}`]) {
    const x = await rawExchange(port, [`GET /api/v1/agent/rebalance/jobs HTTP/1.1\r\nHost: x\r\n` +
      `Authorization: ${value}\r\n\r\n`], { answers: 1 });
    assert.deepStrictEqual(x.statuses, [401], `${JSON.stringify(value)}: ${x.text}`);
  }
});

// RFC 8259 §8.1: JSON text is UTF-8. A body that was not used to be stored as sent, then went
// out in WebSocket text frames that socket.io-client drops (it reconnects in a loop). A \u0000
// in a string used to cut the string short (cJSON keeps C strings): "high\u0000x" was stored
// as "high". Both are refused with 400, and the body must be declared application/json (415).
test('bodies: invalid UTF-8 and \\u0000 get 400, a type other than JSON 415; nothing is stored', async () => {
  const u = user();
  const post = (body, contentType) => request('POST', `${base}/api/v1/agent/rebalance`,
    { headers: u.auth, body, raw: true, contentType });
  const bytes = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
  for (const [what, bad] of [['a lone byte FF', [0xff]], ['overlong "/"', [0xc0, 0xaf]],
    ['overlong NUL', [0xc0, 0x80]], ['a surrogate U+D800', [0xed, 0xa0, 0x80]],
    ['U+110000', [0xf4, 0x90, 0x80, 0x80]], ['a truncated sequence', [0xe2, 0x82]],
    ['a stray continuation byte', [0x80]]]) {
    const r = await post(bytes('{"amount":1,"priority":"hi', bad, 'gh"}'));
    assertError(r, 400, 'invalid_json', /UTF-8/);
    const k = await post(bytes('{"amount":1,"n', bad, '":1}'));
    assertError(k, 400, 'invalid_json', /UTF-8/, what);
  }
  for (const [raw, member] of [['{"amount":1,"priority":"high\\u0000x"}', 'priority'],
    ['{"amount":1,"meta":{"tags":["a","b\\u0000"]}}', 'tags'],
    ['{"amount":1,"a\\u0000b":1}', 'a\\\\u0000b'],
    ['{"amount":1,"note":"x\u0000y"}', 'note']]) { // the last one a raw NUL byte
    const r = await post(raw);
    assertError(r, 400, 'bad_request', new RegExp(`^member "${member}" holds \\\\u0000`));
  }
  for (const ctype of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx',
    'application/json, text/plain']) {
    const r = await post('{"amount":1}', ctype);
    assertError(r, 415, 'unsupported_media_type', /application\/json/);
  }
  const none = await rawExchange(port, [`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: Bearer ${u.token}\r\nContent-Length: 12\r\n\r\n{"amount":1}`], { answers: 1 });
  assert.deepStrictEqual(none.statuses, [415], none.text);
  assert.strictEqual(await rc.exists(`agent:rebalance:user:${u.pk}`), 0);
  // parameters and any case are fine; valid UTF-8 (and \u escapes of it) is kept exactly
  const text = 'caf\u00e9 \u{1f600} \ud7ff\ue000\u{10ffff}';
  for (const ctype of ['application/json; charset=utf-8', 'Application/JSON', 'application/json ;charset=UTF-8']) {
    const r = await post(JSON.stringify({ amount: 2, note: text, esc: 'caf\\u00e9' }).replace('caf\\\\u00e9', 'caf\\u00e9'), ctype);
    assert.strictEqual(r.status, 202, `${ctype}: ${r.text}`);
    const rec = JSON.parse(await rc.get(`agent:rebalance:job:${r.json.jobId}`));
    assert.strictEqual(rec.payload.note, text);
    assert.strictEqual(rec.payload.esc, 'caf\u00e9');
  }
  assert.strictEqual(await rc.zcard(`agent:rebalance:user:${u.pk}`), 3);
});

// RFC 9112 §6.3: a Content-Length given twice with different values, or one that is not a
// number, makes the framing unknowable; a proxy in front may have read it otherwise (request
// smuggling). lws read the first of two, and "0x2f" as 0, then ran the body as a second
// request. Now 400 with connection: close, the connection closed, and the body never run.
test('Content-Length twice or not a number: 400, connection closed, the body never run', async () => {
  const u = user();
  const job = '{"amount":7}';
  const smuggled = `POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.token}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${job.length}\r\n\r\n${job}`;
  for (const cl of [['5', String(smuggled.length)], [String(smuggled.length), '0'], ['0x2f'],
    ['-1'], ['+5'], ['5, 5'], ['1e3'], [''], ['99999999999999999999999']]) {
    const heads = cl.map((v) => `Content-Length: ${v}\r\n`).join('');
    const x = await rawExchange(port, [`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n` +
      `Authorization: Bearer ${u.token}\r\nContent-Type: application/json\r\n${heads}\r\n${smuggled}`]);
    assert.deepStrictEqual(x.statuses, [400], `${JSON.stringify(cl)}: ${x.text}`);
    assert.strictEqual(x.last.error, 'bad_request');
    assert.match(x.last.message, /Content-Length/);
    assert.match(x.text, /\r\nconnection: close\r\n/i);
    assert.ok(x.closed, `${JSON.stringify(cl)}: closed by the gateway`);
  }
  assert.strictEqual(await rc.exists(`agent:rebalance:user:${u.pk}`), 0);
  // whitespace around one valid value is not part of it (RFC 9110 §5.5)
  const x = await rawExchange(port, [`POST /api/v1/agent/rebalance HTTP/1.1\r\nHost: x\r\n` +
    `Authorization: Bearer ${u.token}\r\nContent-Type: application/json\r\nContent-Length:  ${job.length}\t\r\n\r\n${job}`],
  { answers: 1 });
  assert.deepStrictEqual(x.statuses, [202], x.text);
});

// RFC 9110 §9.3.2: HEAD is GET without the body. It used to get 405 with a body, which Node's
// keep-alive client reads as the start of the next answer on the same socket.
test('HEAD answers like GET without a body; a keep-alive client goes on on the same socket', async () => {
  const http = require('node:http');
  const u = user();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const one = (method, path, headers = {}) => new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
  try {
    for (const [path, headers] of [['/healthz', {}], ['/api/v1/agent/rebalance/jobs', u.auth],
      ['/web/app.js', {}], ['/api/v1/nope', {}]]) {
      const g = await one('GET', path, headers);
      const h = await one('HEAD', path, headers);
      assert.strictEqual(h.status, g.status, path);
      assert.strictEqual(h.body, '', path);
      assert.strictEqual(h.headers['content-type'], g.headers['content-type'], path);
      // (the bodies of /healthz, with the uptime, and of a 404, naming the method, may differ)
      if (g.status === 200 && path !== '/healthz')
        assert.strictEqual(h.headers['content-length'], String(Buffer.byteLength(g.body)), path);
      const after = await one('GET', '/readyz');
      assert.strictEqual(after.status, 200, `${path}: the request after HEAD`);
      assert.ok(after.reused, `${path}: the same socket was reused`);
    }
    const p = await one('HEAD', '/api/v1/agent/rebalance', u.auth); // a POST route: 405, no body
    assert.strictEqual(p.status, 405);
    assert.strictEqual(p.headers.allow, 'POST');
    assert.strictEqual(p.body, '');
    assert.strictEqual((await one('GET', '/healthz')).status, 200);
  } finally {
    agent.destroy();
  }
});

// Numbers are stored as the very doubles the client sent: cJSON's 15-digit printing stored
// 0.30000000000000004 as 0.3 and 1.7976931348623157e308 as 1.79769313486232e+308 (infinity).
test('numbers in a payload are stored exactly', async () => {
  const u = user();
  const raw = '{"amount":1.7976931348623157e308,"fee":0.30000000000000004,' +
    '"big":9007199254740993,"tiny":5e-324,"neg":-2.5e-7,"whole":1000}';
  const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: raw, raw: true });
  assert.strictEqual(r.status, 202, r.text);
  const stored = await rc.get(`agent:rebalance:job:${r.json.jobId}`);
  const rec = JSON.parse(stored);
  assert.deepStrictEqual(rec.payload, JSON.parse(raw)); // what the client's own parser reads
  assert.ok(Number.isFinite(rec.payload.amount));
  const listed = await call('GET', '/api/v1/agent/rebalance/jobs', { headers: u.auth });
  assert.deepStrictEqual(listed.json.jobs[0].payload, JSON.parse(raw));
});

test('a client that leaves while Redis is slow is forgotten safely', async () => {
  const u = user();
  const orphaned = async () => Number((await (await fetch(`${base}/metrics`)).text())
    .match(/^gateway_responses_orphaned_total (\d+)$/m)[1]);
  const before = await orphaned();
  const inFlight = async () => Number((await (await fetch(`${base}/metrics`)).text())
    .match(/^gateway_http_requests_in_flight (\d+)$/m)[1]);
  redis.proc.kill('SIGSTOP');
  try {
    const ac = new AbortController();
    const p = fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST', signal: ac.signal,
      headers: { ...u.auth, 'content-type': 'application/json' }, body: '{"amount":1}' }).catch((e) => e);
    // the POST has reached the gateway and waits for Redis (the /metrics GET itself is 1)
    await waitFor(async () => (await inFlight()) >= 2, { what: 'the POST waiting for Redis' });
    ac.abort();
    await p;
  } finally {
    redis.proc.kill('SIGCONT');
  }
  await waitFor(async () => (await orphaned()) === before + 1,
    { what: 'the orphaned request to be counted' });
  assert.match(await (await fetch(`${base}/metrics`)).text(),
    /^gateway_http_requests_total\{route="\/agent\/\{type\}",method="POST",code="499"\} [1-9]/m);
  await waitFor(async () => (await call('GET', '/readyz')).status === 200, { what: 'ready again' });
  // one round trip per POST: the script was already in Redis when the client left, so its job
  // may be queued — but only whole (record, queue entry and user index together)
  const ids = await rc.zrange(`agent:rebalance:user:${u.pk}`, 0, -1);
  assert.ok(ids.length <= 1, `at most the one job: ${ids}`);
  for (const id of ids) {
    assert.ok(await rc.exists(`agent:rebalance:job:${id}`), 'its record');
    assert.ok((await rc.lrange('agent:rebalance:jobs', 0, -1)).includes(id), 'its queue entry');
  }
});

test('Redis stalled (SIGSTOP): requests get 503 within seconds, then recovery', async () => {
  const u = user();
  redis.proc.kill('SIGSTOP');
  let r;
  const t0 = Date.now();
  try {
    r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 1 } });
  } finally {
    redis.proc.kill('SIGCONT');
  }
  assertError(r, 503, 'redis_unavailable');
  assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`);
  await waitFor(async () => (await call('GET', '/readyz')).status === 200, { what: 'ready after stall' });
  assert.strictEqual((await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 1 } })).status, 202);
});

test('Redis killed: 503 and no half-written job; the gateway reconnects after restart', async () => {
  const acked = [];
  let stop = false, unavailable = 0, others = 0, first503 = 0;
  async function producer() {
    while (!stop) {
      const u = user();
      try {
        const r = await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 5 } });
        if (r.status === 202) acked.push({ id: r.json.jobId, pk: u.pk });
        else if (r.status === 503) {
          assert.strictEqual(r.json.error, 'redis_unavailable');
          if (!unavailable++) first503 = Date.now();
        }
        else others++;
      } catch { others++; if (others > 20) stop = true; /* the gateway is gone: give up */ }
    }
  }
  // enough concurrent writers that Redis usually dies with unread input, so the kernel resets
  // the connection (POLLERR) instead of closing it: both must be noticed at once
  const producers = Array.from({ length: 16 }, producer);
  await waitFor(() => acked.length >= 200, { what: 'some jobs before the kill' });
  const killedAt = Date.now();
  await redis.kill('SIGKILL');
  await waitFor(() => unavailable >= 10, { what: '503s while redis is down' });
  assert.ok(first503 - killedAt < 1500, `first 503 came ${first503 - killedAt} ms after the kill`);
  assertError(await call('GET', '/readyz'), 503, 'redis_unavailable');
  assertError(await call('GET', '/api/v1/rebalance/1-a', { headers: user().auth }), 503, 'redis_unavailable');
  assert.strictEqual((await call('GET', '/healthz')).status, 200);
  stop = true;
  await Promise.all(producers);
  assert.strictEqual(others, 0, 'only 202 and 503 answers');
  await redis.start(); // same dir: the append-only file brings the data back
  await waitFor(async () => (await call('GET', '/readyz')).status === 200, { timeoutMs: 15000, what: 'reconnect' });
  const c = redis.client();
  try {
    const queued = new Set(await c.lrange('agent:rebalance:jobs', 0, -1));
    for (const { id, pk } of acked) {
      assert.ok(queued.has(id), `acknowledged job ${id} is queued`);
      assert.ok(await c.exists(`agent:rebalance:job:${id}`), `acknowledged job ${id} has its record`);
      assert.notStrictEqual(await c.zscore(`agent:rebalance:user:${pk}`, id), null);
    }
    const recordIds = (await c.keys('agent:rebalance:job:*')).map((k) => k.split(':').pop());
    for (const id of recordIds) {
      const rec = JSON.parse(await c.get(`agent:rebalance:job:${id}`));
      if (rec.status === 'queued') assert.ok(queued.has(id), `record ${id} without its queue entry`);
    }
    for (const id of queued) assert.ok(recordIds.includes(id), `queued id ${id} without a record`);
  } finally {
    c.disconnect();
  }
  const m = await (await fetch(`${base}/metrics`)).text();
  assert.match(m, /^gateway_redis_reconnects_total [1-9]/m);
  assert.match(m, /^gateway_redis_connected 1$/m);
  const u = user();
  assert.strictEqual((await call('POST', '/api/v1/agent/rebalance', { headers: u.auth, body: { amount: 1 } })).status, 202);
  rc.disconnect();
  rc = redis.client();
});

test('`switchboard token` mints HS256 tokens the gateway and jsonwebtoken accept', async () => {
  const r = await runSwitchboard(['token', '--role', 'admin', '--public-key', 'PK-cli', '--ttl', '120'],
    { JWT_SECRET: SECRET });
  assert.strictEqual(r.code, 0, r.stderr);
  const token = r.stdout.trim();
  const claims = jwt.verify(token, SECRET, { algorithms: ['HS256'] });
  assert.strictEqual(claims.role, 'admin');
  assert.strictEqual(claims.publicKey, 'PK-cli');
  assert.strictEqual(claims.sub, 'PK-cli');
  assert.strictEqual(claims.exp - claims.iat, 120);
  assert.strictEqual((await call('GET', '/api/v1/agent/rebalance/metrics',
    { headers: { authorization: `Bearer ${token}` } })).status, 200);
  const bad = await runSwitchboard(['token', '--role', 'root', '--public-key', 'x'], { JWT_SECRET: SECRET });
  assert.strictEqual(bad.code, 2);
  assert.match(bad.stderr, /--role/);
  const nosecret = await runSwitchboard(['token', '--role', 'user', '--public-key', 'x'], { JWT_SECRET: '' });
  assert.strictEqual(nosecret.code, 2);
  assert.match(nosecret.stderr, /JWT_SECRET/);
});

test('the gateway refuses to start without JWT_SECRET or with bad JOB_TYPES, and exits 0 on SIGTERM', async () => {
  const r = await runSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: '', PORT: String(await freePort()) });
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /JWT_SECRET/);
  // a type list that names no valid type would serve nothing: one clear line, exit 2
  for (const types of ['Bad*Type', '', ' , ', 'rebalance,Report']) {
    const t = await runSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
      PORT: String(await freePort()), JOB_TYPES: types });
    assert.strictEqual(t.code, 2, `JOB_TYPES=${JSON.stringify(types)}: ${t.stderr}`);
    assert.match(t.stderr, /bad setting JOB_TYPES=/);
    assert.strictEqual(t.stderr.trim().split('\n').length, 1, t.stderr);
  }
  const flag = await runSwitchboard(['gateway', '--job-types', 'no/slash'], { REDIS_URL: redis.url,
    JWT_SECRET: SECRET, PORT: String(await freePort()) });
  assert.strictEqual(flag.code, 2);
  assert.match(flag.stderr, /JOB_TYPES='no\/slash'/);
  gw.kill('SIGTERM');
  assert.deepStrictEqual(await gw.exited, { code: 0, signal: null });
  await waitFor(() => /received SIGTERM: shutting down/.test(gw.output), { what: 'the SIGTERM log line' });
});

function promtool(text) {
  try {
    execFileSync('promtool', ['check', 'metrics'], { input: text, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error('promtool not found: install Debian package prometheus (scripts/deps.sh)');
    throw new Error(`promtool check metrics failed:\n${e.stdout}${e.stderr}\n--- text ---\n${text}`);
  }
}

function now() { return Math.floor(Date.now() / 1000); }
function today() { return new Date().toISOString().slice(0, 10); }
function dayBefore(n) { return new Date(Date.now() - n * 86400000).toISOString().slice(0, 10); }
