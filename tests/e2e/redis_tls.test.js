// TLS to Redis (rediss://) against Debian's redis-server with --tls-port and certificates made
// here with openssl (lib/certs.js): the CLI verbs over verified TLS (by IP and by name), mutual
// TLS, the one-line errors and exit 3 of a wrong CA, a wrong host name, an expired certificate
// and a plain client on a TLS port (each fast: never a hang), REDIS_TLS_INSECURE's warning, the
// gateway and an agent end to end over TLS (POST → agent → done → socket.io-client), and a TLS
// Redis restart in the middle of paced POSTs, after which jobs keep flowing.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, waitFor, freePort } = require('./lib/harness');
const { recordingSocket } = require('./lib/sio');
const { makeCerts } = require('./lib/certs');

const SECRET = 'e2e-tls-secret';
for (const k of Object.keys(process.env)) if (k.startsWith('REDIS_')) delete process.env[k];

let certs, redis, mtls, expired;
const sockets = new Set();

test.before(async () => {
  certs = makeCerts();
  const { server, ca, client } = certs;
  redis = await startRedis({ aof: true, tls: { cert: server.cert, key: server.key, ca: ca.cert } });
  mtls = await startRedis({ tls: { cert: server.cert, key: server.key, ca: ca.cert,
    authClients: 'yes', clientCert: client.cert, clientKey: client.key } });
  expired = await startRedis({ tls: { cert: certs.expired.cert, key: certs.expired.key, ca: ca.cert } });
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  for (const r of [redis, mtls, expired]) if (r) await r.stop();
  certs.cleanup();
});

function tlsEnv(r, extra = {}) {
  return { REDIS_URL: r.url, REDIS_TLS_CA: certs.ca.cert, ...extra };
}

// Runs a verb that must fail on the TLS handshake: exit 3, one line naming the reason, fast.
async function expectTlsRefusal(env, reason) {
  const t0 = Date.now();
  const r = await runSwitchboard(['queue'], env);
  assert.strictEqual(r.code, 3, `exit 3 (Redis unavailable): ${r.stderr}`);
  assert.match(r.stderr, reason);
  assert.strictEqual(r.stderr.trim().split('\n').length, 1, `one line:\n${r.stderr}`);
  assert.ok(Date.now() - t0 < 5000, 'fails at once, no hang');
  return r.stderr;
}

test('CLI verbs over verified TLS, by IP and by host name', async () => {
  const env = tlsEnv(redis);
  const q = await runSwitchboard(['enqueue', '{"amount":5}'], env);
  assert.strictEqual(q.code, 0, q.stderr);
  const id = q.stdout.trim();
  const job = await runSwitchboard(['job', '--json', id], env);
  assert.strictEqual(job.code, 0, job.stderr);
  assert.strictEqual(JSON.parse(job.stdout).status, 'queued');
  for (const verb of [['queue'], ['metrics'], ['presence', 'stats'],
    ['events', 'publish', 'audit', '{"x":1}']]) {
    const r = await runSwitchboard(verb, env);
    assert.strictEqual(r.code, 0, `${verb.join(' ')}: ${r.stderr}`);
  }
  // the certificate names localhost too: the name is checked and sent as SNI
  const byName = await runSwitchboard(['job', id], { ...env, REDIS_URL: `rediss://localhost:${redis.port}` });
  assert.strictEqual(byName.code, 0, byName.stderr);
  const doc = await runSwitchboard(['doctor', '--json'], env);
  assert.strictEqual(doc.code, 0, doc.stdout + doc.stderr);
  assert.strictEqual(JSON.parse(doc.stdout).checks.find((c) => c.name === 'tls').detail,
    'on, certificate and name verified');
  // flags work as well as the environment
  const flags = await runSwitchboard(['job', id, '--redis-url', redis.url, '--redis-tls-ca', certs.ca.cert]);
  assert.strictEqual(flags.code, 0, flags.stderr);
  const c = redis.client();
  await c.flushall();
  c.disconnect();
});

test('a wrong CA, a wrong host name and an expired certificate: one line, exit 3', async () => {
  await expectTlsRefusal(tlsEnv(redis, { REDIS_TLS_CA: certs.wrongCa.cert }),
    /certificate verify failed: (unable to get local issuer certificate|self-signed certificate in certificate chain)/);
  await expectTlsRefusal(tlsEnv(redis, { REDIS_TLS_SNI: 'redis.other.example' }),
    /certificate verify failed: hostname mismatch/);
  await expectTlsRefusal(tlsEnv(expired), /certificate verify failed: certificate has expired/);
  // no CA given: the system store does not know ours
  await expectTlsRefusal({ REDIS_URL: redis.url }, /certificate verify failed/);
  // a plain client on the TLS port, a TLS client on... the same port speaking plain: no hang
  const plain = await runSwitchboard(['queue'], { REDIS_URL: `redis://127.0.0.1:${redis.port}` });
  assert.strictEqual(plain.code, 3, plain.stderr);
});

test('bad TLS settings are exit 2 and name the setting', async () => {
  const missing = await runSwitchboard(['queue'], tlsEnv(redis, { REDIS_TLS_CA: '/nonexistent/ca.pem' }));
  assert.strictEqual(missing.code, 2);
  assert.match(missing.stderr, /REDIS_TLS_CA='\/nonexistent\/ca.pem'/);
  const plain = await runSwitchboard(['queue'], { REDIS_URL: 'redis://127.0.0.1:1', REDIS_TLS_CA: certs.ca.cert });
  assert.strictEqual(plain.code, 2);
  assert.match(plain.stderr, /need a rediss:\/\//);
});

test('mutual TLS: refused without a client certificate, works with one', async () => {
  const stderr = await expectTlsRefusal(tlsEnv(mtls), /the server requires a client certificate/);
  assert.doesNotMatch(stderr, /certificate verify failed/); // the server refused us, not we it
  const ok = await runSwitchboard(['queue'], tlsEnv(mtls, { REDIS_TLS_CERT: certs.client.cert,
    REDIS_TLS_KEY: certs.client.key }));
  assert.strictEqual(ok.code, 0, ok.stderr);
});

test('REDIS_TLS_INSECURE connects without checks and warns loudly', async () => {
  const r = await runSwitchboard(['queue'], tlsEnv(expired, { REDIS_TLS_CA: certs.wrongCa.cert,
    REDIS_TLS_INSECURE: '1' }));
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /WARNING: REDIS_TLS_INSECURE is on/);
  const doc = await runSwitchboard(['doctor', '--json'], tlsEnv(expired, { REDIS_TLS_INSECURE: '1' }));
  const tls = JSON.parse(doc.stdout).checks.find((c) => c.name === 'tls');
  assert.deepStrictEqual([tls.status, tls.detail], ['warn', 'on, NOT verified (REDIS_TLS_INSECURE)']);
});

function user() {
  const pk = `TLS-${process.pid}`;
  return { pk, token: jwt.sign({ sub: 'u-tls', publicKey: pk, role: 'user' }, SECRET,
    { algorithm: 'HS256', expiresIn: '1h' }) };
}

async function post(base, token, amount) {
  const res = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ amount }) });
  return { status: res.status, json: await res.json() };
}

test('gateway and agent over TLS: POST → agent → done → socket.io-client; a TLS Redis restart under load', async () => {
  const port = await freePort();
  const env = tlsEnv(redis, { JWT_SECRET: SECRET, PORT: String(port), BIND: '127.0.0.1',
    RATE_LIMIT: '100000', RETRY_BACKOFF_MS: '50' });
  const gw = startSwitchboard(['gateway'], env, 'gateway');
  const agent = startSwitchboard(['agent', '--concurrency', '4'], env, 'agent');
  try {
    await gw.waitForOutput(/subscribed to agent:rebalance:events/);
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => {
      try { return (await fetch(`${base}/readyz`)).status === 200; } catch { return false; }
    }, { what: 'gateway /readyz' });
    const u = user();
    const s = recordingSocket(sockets, base, u.token, { transports: ['websocket'] });
    await s.connected$();
    const first = await post(base, u.token, 1000);
    assert.strictEqual(first.status, 202, JSON.stringify(first.json));
    const done = await s.next('rebalance:done', (d) => d.jobId === first.json.jobId);
    assert.strictEqual(done.data.result.fee, 20);

    // paced POSTs; Redis (AOF) is killed and restarted in the middle; POSTs answered 202
    // before and after it all reach done, and the ones during it are 503, never a hang
    const accepted = [];
    let stop = false, statuses = [];
    const pacer = (async () => {
      while (!stop) {
        const r = await post(base, u.token, 100).catch(() => ({ status: 0 }));
        statuses.push(r.status);
        if (r.status === 202) accepted.push(r.json.jobId);
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await waitFor(() => accepted.length >= 10, { what: '10 jobs accepted before the restart' });
    const from = gw.output.length;
    await redis.restart();
    await waitFor(() => /redis \(commands\) reconnected/.test(gw.output.slice(from)),
      { what: 'the gateway to reconnect over TLS' });
    const after = accepted.length;
    await waitFor(() => accepted.length >= after + 10, { what: '10 jobs accepted after the restart' });
    stop = true;
    await pacer;
    assert.ok(statuses.every((c) => c === 202 || c === 503), `202 or 503 only: ${[...new Set(statuses)]}`);
    // every job accepted after the restart is done, and its done event reaches the socket
    for (const id of accepted.slice(after)) {
      await s.next('rebalance:done', (d) => d.jobId === id, `done of ${id}`);
    }
    assert.match(agent.output, /reconnected/);
  } finally {
    for (const c of [gw, agent]) { c.kill('SIGTERM'); await c.exited; }
  }
});
