// Data read back from Redis never reaches a client as bytes that are not UTF-8, whoever wrote
// it there (a seed-style agent with redis-cli, any publisher): presence events forwarded to
// admins, records replayed on connect and the HTTP answers that carry records (presence lists,
// one agent, a job, a user's jobs) go out repaired, each invalid sequence replaced by U+FFFD.
// A presence change is forwarded, not dropped: an agent that went offline must not stay
// online on the dashboards. (Live status messages that are not UTF-8 are dropped instead:
// socketio_utf8.test.js.) The sockets are socket.io-client over `ws`, which closes a
// connection on a text frame that is not UTF-8 (1007), so an invalid frame shows as a
// disconnect and a lost event; the HTTP checks decode the raw bytes strictly, since fetch's
// text() would repair them itself.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, waitFor, freePort } = require('./lib/harness');
const { recordingSocket } = require('./lib/sio');

const SECRET = 'e2e-redis-utf8-secret';
const BAD = [0xff, 0xe2, 0x82]; // a byte that starts nothing, then a sequence cut short
const FIXED = '\ufffd\ufffd'; // what BAD reads as once repaired
let redis, rc, gw, base;
const sockets = new Set();

function token(role, claims = {}) {
  const sub = claims.sub || crypto.randomUUID();
  const pk = `PK-${sub}`;
  return { sub, pk, token: jwt.sign({ publicKey: pk, role, ...claims, sub }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' }) };
}

// obj as JSON text with the string '__BAD__' (in one of its values) replaced by BAD's bytes.
function withBadBytes(obj) {
  const [a, b] = JSON.stringify(obj).split('__BAD__');
  return Buffer.concat([Buffer.from(a), Buffer.from(BAD), Buffer.from(b)]);
}

// GET path as who; the body must be valid UTF-8 and JSON. Resolves {status, json}.
async function getStrict(path, who) {
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${who.token}` } });
  const bytes = Buffer.from(await res.arrayBuffer());
  let text;
  assert.doesNotThrow(() => { text = new TextDecoder('utf-8', { fatal: true }).decode(bytes); },
    `GET ${path}: the answer is not valid UTF-8`);
  return { status: res.status, json: JSON.parse(text) };
}

async function metric(name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

async function connected(who) {
  const s = recordingSocket(sockets, base, who.token, { transports: ['websocket'] });
  await s.connected$();
  return s;
}

test.before(async () => {
  redis = await startRedis();
  rc = redis.client();
  const port = await freePort();
  gw = startSwitchboard(['gateway'], { REDIS_URL: redis.url, JWT_SECRET: SECRET,
    PORT: String(port), BIND: '127.0.0.1', JOB_TYPES: 'rebalance' }, 'gateway');
  base = `http://127.0.0.1:${port}`;
  await gw.waitForOutput(/subscribed to agent:presence/);
  await gw.waitForOutput(/subscribed to __keyevent@0__:expired/);
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  if (gw && gw.exitCode === null) gw.kill('SIGKILL');
  if (rc) rc.disconnect();
  if (redis) await redis.stop();
});

test('a presence record written straight into Redis: lists repaired, its expiry reaches admins', async () => {
  const id = `seed-${process.pid}`;
  const rec = { agent_id: id, name: 'Ann __BAD__', email: 'ann@example.com',
    department_id: 'support', department: 'Support', status: 'online',
    last_heartbeat: new Date().toISOString(), current_chats: 0, max_chats: 5 };
  const meta = { agent_id: id, name: 'Ann __BAD__', email: 'ann@example.com',
    department_id: 'support', department: 'Support' };
  await rc.set(`agent:online:${id}`, withBadBytes(rec), 'EX', 60);
  await rc.sadd('agents:all', id);
  await rc.sadd('agents:dept:support', id);
  await rc.hset('agents:meta', id, withBadBytes(meta));
  const user = token('user');
  for (const path of ['/api/v1/agent-status/online', '/api/v1/agent-status/department/support']) {
    const r = await getStrict(path, user);
    assert.strictEqual(r.status, 200);
    const listed = JSON.stringify(r.json.data);
    assert.ok(listed.includes(`Ann ${FIXED}`), `${path}: ${listed}`);
  }
  const one = await getStrict(`/api/v1/agent-status/agent/${id}`, user);
  assert.strictEqual(one.status, 200);
  assert.ok(JSON.stringify(one.json.data).includes(`Ann ${FIXED}`), JSON.stringify(one.json));
  // the seed agent stops: its key expires, the gateway announces it from agents:meta
  const admin = await connected(token('admin'));
  await rc.pexpire(`agent:online:${id}`, 1);
  const ev = await admin.next('agent:offline', (d) => d.agent && d.agent.agent_id === id);
  assert.strictEqual(ev.data.agent.name, `Ann ${FIXED}`);
  assert.strictEqual(ev.data.reason, 'expired');
  assert.deepStrictEqual(admin.disconnects, [], 'the admin socket was dropped');
  assert.ok(await metric('gateway_presence_events_repaired_total') >= 1);
  assert.match(gw.output, /held bytes that are not UTF-8: forwarded with U\+FFFD/);
});

test('a presence event published with bytes that are not UTF-8 is forwarded repaired', async () => {
  const admin = await connected(token('admin'));
  const id = `pub-${process.pid}`;
  const before = await metric('gateway_presence_events_repaired_total');
  await rc.publish('agent:presence', withBadBytes({ event: 'agent:status',
    previous_status: 'online', timestamp: new Date().toISOString(),
    agent: { agent_id: id, name: 'Bo __BAD__', status: 'away' } }));
  await rc.publish('agent:presence', JSON.stringify({ event: 'agent:online',
    timestamp: new Date().toISOString(), agent: { agent_id: `${id}-next`, name: 'Cy' } }));
  const ev = await admin.next('agent:status', (d) => d.agent && d.agent.agent_id === id);
  assert.strictEqual(ev.data.agent.name, `Bo ${FIXED}`);
  await admin.next('agent:online', (d) => d.agent && d.agent.agent_id === `${id}-next`);
  assert.deepStrictEqual(admin.disconnects, [], 'the admin socket was dropped');
  assert.strictEqual(await metric('gateway_presence_events_repaired_total'), before + 1);
});

test('a job record rewritten with bytes that are not UTF-8: HTTP answers and the replay are repaired', async () => {
  const user = token('user');
  const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${user.token}` },
    body: JSON.stringify({ amount: 5 }) });
  assert.strictEqual(res.status, 202);
  const { jobId } = await res.json();
  const key = `agent:rebalance:job:${jobId}`;
  const rec = JSON.parse(await rc.get(key));
  Object.assign(rec, { status: 'done', result: { note: 'paid __BAD__' },
    updatedAt: new Date().toISOString() });
  await rc.set(key, withBadBytes(rec), 'KEEPTTL'); // a seed-style agent finishing the job
  const got = await getStrict(`/api/v1/agent/rebalance/${jobId}`, user);
  assert.strictEqual(got.status, 200);
  assert.strictEqual(got.json.result.note, `paid ${FIXED}`);
  const list = await getStrict('/api/v1/agent/rebalance/jobs', user);
  assert.strictEqual(list.status, 200);
  assert.ok(JSON.stringify(list.json).includes(`paid ${FIXED}`), JSON.stringify(list.json));
  const s = await connected(user);
  const ev = await s.next('rebalance:done', (d) => d.jobId === jobId && d.replay === true);
  assert.strictEqual(ev.data.result.note, `paid ${FIXED}`);
  assert.deepStrictEqual(s.disconnects, [], 'the socket was dropped');
});
