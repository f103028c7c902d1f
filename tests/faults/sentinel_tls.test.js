// TLS to the Sentinels (issue 17): a TLS-only master, its TLS replica and a TLS-only Sentinel
// (`redis-server --sentinel` with tls-port, tls-replication yes), certificates made by openssl
// (e2e/lib/certs.js). With rediss:// and REDIS_TLS_CA, `switchboard enqueue` finds the master
// through the Sentinel over verified TLS; a gateway and an agent do the same and run a job to
// `done`; with the wrong CA the Sentinel lookup fails fast with a one-line certificate error.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('../e2e/lib/harness');
const { ask, startSentinel, waitSentinelsReady } = require('../e2e/lib/sentinel');
const { makeCerts } = require('../e2e/lib/certs');

const MASTER = 'tlsmaster';
const SECRET = 'sentinel-tls-secret';
for (const k of Object.keys(process.env)) if (k.startsWith('REDIS_')) delete process.env[k];

let certs, master, replica, sentinel, env;

test.before(async () => {
  certs = makeCerts();
  const tls = { cert: certs.server.cert, key: certs.server.key, ca: certs.ca.cert };
  master = await startRedis({ tls });
  replica = await startRedis({ tls, args: ['--tls-replication', 'yes', '--replicaof', '127.0.0.1',
    String(master.port)] });
  await waitFor(async () => /master_link_status:up/.test(
    await ask(replica.port, (c) => c.info('replication'), tls) || ''), { what: 'the replica in sync' });
  sentinel = await startSentinel(MASTER, master.port, { quorum: 1, tls });
  await waitSentinelsReady([sentinel], MASTER, 1);
  env = { REDIS_URL: 'rediss://127.0.0.1', REDIS_TLS_CA: certs.ca.cert,
    REDIS_SENTINELS: `127.0.0.1:${sentinel.port}`, REDIS_SENTINEL_MASTER: MASTER };
});

test.after(async () => {
  if (sentinel) await sentinel.stop();
  if (replica) await replica.stop();
  if (master) await master.stop();
  if (certs) certs.cleanup();
});

test('sentinel tls: the CLI finds the master through a TLS Sentinel', async () => {
  const q = await runSwitchboard(['enqueue', '{"amount":7}'], env);
  assert.strictEqual(q.code, 0, q.stderr);
  const id = q.stdout.trim().split(/\s+/).pop();
  const c = master.client();
  try {
    assert.ok(await c.exists(`agent:rebalance:job:${id}`), `job ${id} is on the TLS master`);
  } finally { c.disconnect(); }
});

test('sentinel tls: a wrong CA is a one-line certificate error, fast', async () => {
  const t = Date.now();
  const r = await runSwitchboard(['queue'], { ...env, REDIS_TLS_CA: certs.wrongCa.cert });
  assert.notStrictEqual(r.code, 0);
  assert.match(r.stderr, /Sentinel|sentinel/);
  assert.match(r.stderr, /certificate verify failed/);
  assert.ok(Date.now() - t < 10000, 'no hang');
});

test('sentinel tls: gateway and agent over TLS Sentinels run a job to done', async () => {
  const port = await freePort();
  const gw = startSwitchboard(['gateway'], { ...env, PORT: String(port), BIND: '127.0.0.1',
    JWT_SECRET: SECRET }, 'gateway');
  const agent = startSwitchboard(['agent', '--exec', 'echo \'{"ok":true}\''], env, 'agent');
  try {
    await gw.waitForOutput(/listening on/);
    /* listening comes before the Sentinel lookup and the TLS handshake to the master: a POST
     * meanwhile is a correct 503, so wait until the gateway says Redis answers */
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200,
      { timeoutMs: 30000, what: 'the gateway ready (redis over TLS via the Sentinel)' });
    const token = jwt.sign({ sub: 'tls-user', publicKey: 'PK-tls', role: 'user' }, SECRET,
      { algorithm: 'HS256', expiresIn: '1h' });
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/agent/rebalance`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ amount: 9 }) });
    assert.strictEqual(res.status, 202, await res.clone().text());
    const { jobId } = await res.json();
    const c = master.client();
    try {
      await waitFor(async () => {
        const rec = await c.get(`agent:rebalance:job:${jobId}`);
        return rec && JSON.parse(rec).status === 'done';
      }, { what: 'the job done on the TLS master' });
    } finally { c.disconnect(); }
    assert.doesNotMatch(gw.output, /cannot watch the Sentinels/);
  } finally {
    gw.kill('SIGKILL');
    agent.kill('SIGKILL');
  }
});

test('sentinel tls: doctor reports the Sentinels, the master they name, its ROLE, replicas, quorum', async () => {
  const r = await runSwitchboard(['doctor'], env);
  assert.strictEqual(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`ok +sentinel +1/1 Sentinels reachable, 1 agree: master '${MASTER}' ` +
    `at 127\\.0\\.0\\.1:${master.port} \\(ROLE master\\), 1 replica, 0 other Sentinels, quorum 1`));
  // a Sentinel that does not answer: a warning naming it, still usable
  const dead = await freePort();
  const w = await runSwitchboard(['doctor', '--json'],
    { ...env, REDIS_SENTINELS: `127.0.0.1:${dead},127.0.0.1:${sentinel.port}` });
  assert.strictEqual(w.code, 0, w.stdout + w.stderr);
  const check = JSON.parse(w.stdout).checks.find((c) => c.name === 'sentinel');
  assert.strictEqual(check.status, 'warn', w.stdout);
  assert.match(check.detail, /^1\/2 Sentinels reachable, 1 agree/);
  assert.match(check.fix, /start the missing Sentinels/);
  // without Sentinels there is no sentinel check
  const plain = await runSwitchboard(['doctor'], { REDIS_URL: master.url, REDIS_TLS_CA: certs.ca.cert });
  assert.doesNotMatch(plain.stdout, /sentinel/);
});
