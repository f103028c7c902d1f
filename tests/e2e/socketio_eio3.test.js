// ALLOW_EIO3: Engine.IO v3 / Socket.IO v2 clients with the official socket.io-client v2 (npm
// alias socket.io-client-v2) against a real gateway, a real Redis and a real `switchboard
// agent`, in every transport mode (polling only, websocket only, polling then upgrade): the
// token comes in the handshake query, each user receives its own job's created / processing /
// done and never another user's; a bad or missing token is refused with the v2 error packet;
// the reversed heartbeat keeps a session alive; the raw v3 framing on the wire; and a gateway
// without ALLOW_EIO3 refuses v3 as before. Tests wait on events; the only time window checks
// that something does NOT happen, after an event that must happen first.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const io2 = require('socket.io-client-v2');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');

const SECRET = 'e2e-eio3-secret';
const EVENTS = ['rebalance:created', 'rebalance:processing', 'rebalance:done', 'rebalance:error'];
let redis, gw, gwOff, agent, base, baseOff;
let userSeq = 0;
const sockets = new Set();

function user() {
  const n = ++userSeq;
  const pk = `EIO3-${process.pid}-${n}`;
  const token = jwt.sign({ sub: `u-${n}`, publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' });
  return { pk, token };
}

// A socket.io-client v2 socket recording the job events, errors and connects.
function connect2(url, token, opts = {}) {
  const s = io2(url, { query: token === undefined ? {} : { token }, forceNew: true,
    reconnection: false, ...opts });
  sockets.add(s);
  s.events = [];
  s.errors = [];
  s.connects = 0;
  for (const name of EVENTS) s.on(name, (data) => s.events.push({ name, data }));
  s.on('error', (e) => s.errors.push(e));
  s.on('connect_error', (e) => s.errors.push(e));
  s.on('connect', () => { s.connects++; });
  // generous: the first job also waits for the agent to start
  s.next = (name, pred = () => true) => waitFor(
    () => s.events.find((e) => e.name === name && pred(e.data)), { what: name, timeoutMs: 30000 });
  s.connected$ = () => waitFor(() => s.connected, { what: 'v2 connect' });
  return s;
}

async function post(token, body) {
  const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify(body) });
  const json = await res.json();
  assert.strictEqual(res.status, 202, JSON.stringify(json));
  return json.jobId;
}

async function startGateway(env, name) {
  const port = await freePort();
  const g = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', RATE_LIMIT: '1000', ...env }, name);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${url}/readyz`)).status === 200; } catch { return false; }
  }, { what: `${name} /readyz` });
  return { g, url };
}

test.before(async () => {
  redis = await startRedis();
  // a short heartbeat, so that the clients' pings are exercised within each test
  ({ g: gw, url: base } = await startGateway({ ALLOW_EIO3: '1', PING_INTERVAL: '400',
    PING_TIMEOUT: '2000' }, 'gateway-eio3'));
  ({ g: gwOff, url: baseOff } = await startGateway({}, 'gateway-v4-only'));
  agent = startSwitchboard(['agent', '--concurrency', '4'],
    { REDIS_URL: redis.url, MAX_ATTEMPTS: '1' }, 'agent');
});

test.after(async () => {
  for (const s of sockets) s.close();
  for (const p of [agent, gw, gwOff]) if (p && p.exitCode === null) p.kill('SIGKILL');
  await redis.stop();
});

const MODES = [
  ['polling only', { transports: ['polling'] }, 'polling'],
  ['websocket only', { transports: ['websocket'] }, 'websocket'],
  ['polling then upgrade', {}, 'websocket'],
];

for (const [mode, opts, transport] of MODES) {
  test(`v2 client, ${mode}: each user gets its own job's events and never another's`, async () => {
    const a = user();
    const b = user();
    const sa = connect2(base, a.token, opts);
    const sb = connect2(base, b.token, opts);
    await sa.connected$();
    await sb.connected$();
    await waitFor(() => sa.io.engine.transport.name === transport &&
      sb.io.engine.transport.name === transport, { what: `transport ${transport}` });
    const ida = await post(a.token, { amount: 50 });
    const idb = await post(b.token, { amount: 50 });
    for (const [s, id] of [[sa, ida], [sb, idb]]) {
      await s.next('rebalance:created', (d) => d.jobId === id);
      await s.next('rebalance:processing', (d) => d.jobId === id);
      const done = await s.next('rebalance:done', (d) => d.jobId === id);
      assert.strictEqual(done.data.status, 'done');
      assert.strictEqual(done.data.result.fee, 1);
    }
    // both users' done events have arrived: nothing of the other's job ever came
    assert.ok(sa.events.every((e) => e.data.jobId !== idb), JSON.stringify(sa.events));
    assert.ok(sb.events.every((e) => e.data.jobId !== ida), JSON.stringify(sb.events));
    // the client pinged (every 400 ms) and the gateway answered: still the same session
    const pongs = await new Promise((resolve) => {
      let n = 0;
      sa.on('pong', () => { if (++n === 3) resolve(n); });
    });
    assert.strictEqual(pongs, 3);
    assert.strictEqual(sa.connected, true);
    assert.strictEqual(sa.connects, 1);
    assert.strictEqual(sa.io.engine.transport.name, transport);
    assert.deepStrictEqual([sa.errors, sb.errors], [[], []]);
    sa.close();
    sb.close();
  });
}

for (const [mode, opts] of MODES) {
  test(`v2 client, ${mode}: a bad or missing token is refused with the v2 error packet`,
    async () => {
      const forged = jwt.sign({ sub: 'x', publicKey: 'EIO3-forged', role: 'user' }, 'wrong',
        { algorithm: 'HS256', expiresIn: '1h' });
      const expired = jwt.sign({ sub: 'x', publicKey: 'EIO3-old', role: 'user',
        exp: Math.floor(Date.now() / 1000) - 60 }, SECRET, { algorithm: 'HS256' });
      for (const token of [forged, expired, 'not-a-jwt', undefined]) {
        const s = connect2(base, token, opts);
        await waitFor(() => s.errors.length > 0, { what: 'error event' });
        // v2 error packets carry the message as a JSON string: the client emits it as is
        assert.strictEqual(typeof s.errors[0], 'string', JSON.stringify(s.errors));
        assert.match(s.errors[0], token === undefined ? /missing token/ : /token|signature/i);
        assert.strictEqual(s.connected, false);
        assert.strictEqual(s.connects, 0);
        s.close();
      }
    });
}

test('raw v3 polling: length-prefixed payloads, client ping answered, query token', async () => {
  const u = user();
  const q = `${base}/socket.io/?EIO=3&transport=polling&token=${u.token}`;
  const open = await (await fetch(q)).text();
  const m = open.match(/^(\d+):(0\{.*\})$/);
  assert.ok(m, open);
  assert.strictEqual(Number(m[1]), m[2].length);
  const hs = JSON.parse(m[2].slice(1));
  assert.deepStrictEqual(hs.upgrades, ['websocket']);
  assert.strictEqual(hs.pingInterval, 400);
  const sq = `${base}/socket.io/?EIO=3&transport=polling&sid=${hs.sid}`;
  assert.strictEqual(await (await fetch(sq)).text(), '2:40'); // connected on its own, no sid
  // a ping (and an emoji in a message, 2 UTF-16 units) in one string payload
  const post = await fetch(sq, { method: 'POST', body: '1:2' + '8:42["😀"]' });
  assert.strictEqual(post.status, 200);
  assert.strictEqual(await (await fetch(sq)).text(), '1:3');
  // the XHR2 binary payload of a ping: 0 (string), length 1 as a digit byte, 0xFF, "2"
  const bin = await fetch(sq, { method: 'POST', body: Buffer.from([0, 1, 0xff, 0x32]),
    headers: { 'content-type': 'application/octet-stream' } });
  assert.strictEqual(bin.status, 200);
  assert.strictEqual(await (await fetch(sq)).text(), '1:3');
  // a length that cuts the packet short is a framing error: 400, the session is closed
  const bad = await fetch(sq, { method: 'POST', body: '9:2' });
  assert.strictEqual(bad.status, 400);
  const after = await fetch(sq);
  assert.ok(after.status === 400 || (await after.text()) === '1:1');
});

test('ALLOW_EIO3 off: v3 is refused as before, for raw requests and the v2 client', async () => {
  const u = user();
  const r = await fetch(`${baseOff}/socket.io/?EIO=3&transport=polling&token=${u.token}`);
  assert.strictEqual(r.status, 400);
  assert.deepStrictEqual(await r.json(), { code: 5, message: 'Unsupported protocol version' });
  for (const [, opts] of MODES) {
    const s = connect2(baseOff, u.token, opts);
    await waitFor(() => s.errors.length > 0, { what: 'connect_error' });
    assert.strictEqual(s.connected, false);
    assert.strictEqual(s.connects, 0);
    s.close();
  }
  // and on the v3 gateway a v4 client still needs the CONNECT auth: the query is not read
  const v4 = await fetch(`${base}/socket.io/?EIO=4&transport=polling&token=${u.token}`);
  const sid = JSON.parse((await v4.text()).slice(1)).sid;
  const v4q = `${base}/socket.io/?EIO=4&transport=polling&sid=${sid}`;
  assert.strictEqual((await fetch(v4q, { method: 'POST', body: '40' })).status, 200);
  assert.match(await (await fetch(v4q)).text(), /^44\{"message":"missing token/);
});
