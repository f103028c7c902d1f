// HTTPS and WSS served by the gateway itself (TLS_CERT/TLS_KEY), with real TLS clients that
// trust only a CA this test makes with openssl: node https, curl --cacert, socket.io-client on
// WebSocket and on long-polling (a job's status arriving live over wss), the certificate
// replaced and reloaded on SIGHUP (new connections get the new one; a bad pair is refused and
// the old one kept), and start-up refusing a bad pair with one line and exit 2.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, runSwitchboard, freePort } = require('./lib/harness');
const { recordingSocket } = require('./lib/sio');
const { makeCa, httpsRequest, peerCN } = require('./lib/tls');

const SECRET = 'e2e-tls-secret';
let redis, gw, agent, port, base, pki, live;
const sockets = new Set();

function token(pk) {
  return jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, SECRET, { expiresIn: '1h' });
}

test.before(async () => {
  redis = await startRedis();
  pki = makeCa();
  const a = pki.cert('gateway-one');
  // the gateway reads these paths; the SIGHUP test replaces their contents
  live = { cert: `${pki.dir}/live.pem`, key: `${pki.dir}/live.key` };
  fs.copyFileSync(a.cert, live.cert);
  fs.copyFileSync(a.key, live.key);
  port = await freePort();
  base = `https://localhost:${port}`;
  const env = { JWT_SECRET: SECRET, REDIS_URL: redis.url };
  gw = startSwitchboard(['gateway', '--port', String(port), '--bind', '127.0.0.1',
    '--tls-cert', live.cert, '--tls-key', live.key], env);
  await gw.waitForOutput(/listening on https:/);
  agent = startSwitchboard(['agent'], { ...env, RETRY_BACKOFF_MS: '10' });
  // the agent needs no wait: a job POSTed before it takes jobs waits in the queue
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  for (const p of [gw, agent]) if (p) { p.kill('SIGTERM'); await p.exited; }
  await redis.stop();
  pki.remove();
});

test('https: the gateway answers with the certificate of the CA; plain TLS trust fails', async () => {
  const r = await httpsRequest(`${base}/healthz`, pki.ca);
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.json.status, 'ok');
  assert.strictEqual(r.peerCN, 'gateway-one');
  await assert.rejects(httpsRequest(`${base}/healthz`, undefined), /self[- ]signed|unable to verify/i);
  const plain = await fetch(`http://127.0.0.1:${port}/healthz`).then(() => 'answered', () => 'refused');
  assert.strictEqual(plain, 'refused', 'plain HTTP on the TLS port must not be served');
});

test('curl --cacert: a job POSTed over https', async (t) => {
  const curl = await new Promise((resolve) => execFile('curl', ['--version'], (e) => resolve(!e)));
  if (!curl) return t.skip('curl is missing');
  const out = await new Promise((resolve, reject) => execFile('curl', ['-sS', '--cacert',
    `${pki.dir}/ca.pem`, '-H', `authorization: Bearer ${token('TLS-curl')}`, '-H',
    'content-type: application/json', '-d', '{"amount":100}', '-w', '\n%{http_code}',
    `${base}/api/v1/agent/rebalance`], (e, so, se) => (e ? reject(new Error(se)) : resolve(so))));
  const [body, code] = out.split('\n');
  assert.strictEqual(code, '202', out);
  assert.match(JSON.parse(body).jobId, /^\d+-[0-9a-f]{8}$/);
});

for (const transports of [['websocket'], ['polling']]) {
  test(`socket.io-client over TLS (${transports}): a job's status arrives live`, async () => {
    const pk = `TLS-${transports}`;
    const s = recordingSocket(sockets, base, token(pk), { transports, ca: pki.ca });
    await s.connected$();
    assert.strictEqual(s.io.engine.transport.name, transports[0]);
    const r = await httpsRequest(`${base}/api/v1/agent/rebalance`, pki.ca, { method: 'POST',
      headers: { authorization: `Bearer ${token(pk)}`, 'content-type': 'application/json' },
      body: { amount: 1000 } });
    assert.strictEqual(r.status, 202, r.text);
    const done = await s.next('rebalance:done', (d) => d.jobId === r.json.jobId);
    assert.strictEqual(done.data.result.fee, 20);
    s.disconnect();
  });
}

test('SIGHUP reloads the certificate: new connections get the new one; a bad pair is refused', async () => {
  assert.strictEqual(await peerCN(port, pki.ca), 'gateway-one');
  const wss = recordingSocket(sockets, base, token('TLS-hup'), { transports: ['websocket'], ca: pki.ca });
  await wss.connected$();
  const b = pki.cert('gateway-two');
  fs.copyFileSync(b.cert, `${live.cert}.new`); // replaced by rename, as an operator would
  fs.copyFileSync(b.key, `${live.key}.new`);
  fs.renameSync(`${live.key}.new`, live.key);
  fs.renameSync(`${live.cert}.new`, live.cert);
  const reloads = (gw.output.match(/reloaded the TLS certificate/g) || []).length;
  gw.kill('SIGHUP');
  await gw.waitForOutput(new RegExp(`(reloaded the TLS certificate[^]*){${reloads + 1}}`));
  assert.strictEqual(await peerCN(port, pki.ca), 'gateway-two');
  assert.strictEqual(wss.connected, true, 'an open WebSocket is kept across the reload');
  // a key that does not match: refused, the running certificate stays
  fs.copyFileSync(`${pki.dir}/ca.key`, live.key);
  gw.kill('SIGHUP');
  await gw.waitForOutput(/certificate not reloaded, the old one stays: bad setting TLS_KEY=.*does not match/);
  assert.strictEqual(await peerCN(port, pki.ca), 'gateway-two');
  assert.strictEqual((await httpsRequest(`${base}/healthz`, pki.ca)).status, 200);
  wss.disconnect();
});

test('start-up: a bad or half TLS setting stops the gateway with one line and exit 2', async () => {
  const c = pki.cert('startup');
  const env = { JWT_SECRET: SECRET, REDIS_URL: redis.url };
  const cases = [
    [['--tls-cert', c.cert], /bad setting TLS_KEY: TLS_CERT and TLS_KEY go together/],
    [['--tls-cert', `${pki.dir}/missing.pem`, '--tls-key', c.key], /bad setting TLS_CERT='.*missing.pem': No such file/],
    [['--tls-cert', c.key, '--tls-key', c.key], /bad setting TLS_CERT='.*': not a PEM certificate chain/],
    [['--tls-cert', c.cert, '--tls-key', `${pki.dir}/ca.key`], /bad setting TLS_KEY='.*': it does not match TLS_CERT/],
  ];
  for (const [args, re] of cases) {
    const r = await runSwitchboard(['gateway', '--port', String(await freePort()), ...args], env);
    assert.strictEqual(r.code, 2, r.stderr);
    assert.match(r.stderr, re);
    assert.strictEqual(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
