// `switchboard up` as a new user runs it (what `make run` does): a private redis-server, a
// gateway and an agent come up, the printed token works against the printed URL, a job goes
// through, and Ctrl-C (SIGINT) stops everything cleanly, Redis last. And its start-up: one `up`
// per data directory, loopback unless --bind, a taken port stops it with exit 1, --port 0.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { startSwitchboard, runSwitchboard, startRedis, waitFor } = require('./lib/harness');

// a new user has no Redis and no secret configured: `up` brings its own
for (const k of ['REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'JWT_SECRET', 'BIND', 'PORT']) delete process.env[k];

// The port in the banner's dashboard URL (the gateway's real one: `up --port 0`).
async function bannerPort(up) {
  await up.waitForOutput(/Ctrl-C stops everything/);
  const m = up.output.match(/dashboard: http:\/\/127\.0\.0\.1:(\d+)\//);
  assert.ok(m, `banner prints the loopback URL:\n${up.output}`);
  return Number(m[1]);
}

async function stopUp(up) {
  if (up.exitCode === null) { up.kill('SIGINT'); await up.exited; }
}

test('switchboard up: private redis, gateway and agent; a job goes through; Ctrl-C stops all', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-up-'));
  const env = { SB_DATA_DIR: dir };
  const up = startSwitchboard(['up', '--concurrency', '2', '--port', '0'], env, 'up');
  try {
    const port = await bannerPort(up);
    const m = up.output.match(/user token \(demo-user[^\n]*\n\s+(\S+)/);
    assert.ok(m, 'banner prints a user token');
    const token = m[1];
    assert.match(up.output, new RegExp(`listening on http://127\\.0\\.0\\.1:${port} `), 'loopback by default');
    assert.doesNotMatch(up.output, /WARNING/);
    assert.ok(fs.existsSync(path.join(dir, 'redis.sock')), 'private redis socket in the data dir');
    const base = `http://127.0.0.1:${port}/api/v1`;
    const auth = { Authorization: `Bearer ${token}` };
    await waitFor(async () => {
      try { return (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200; } catch { return false; }
    }, { what: 'gateway ready' });
    const res = await fetch(`${base}/agent/rebalance`, { method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ amount: 1000 }) });
    assert.strictEqual(res.status, 202);
    const { jobId } = await res.json();
    const job = await waitFor(async () => {
      const j = await (await fetch(`${base}/agent/rebalance/${jobId}`, { headers: auth })).json();
      return j.status === 'done' ? j : null;
    }, { what: 'job done' });
    assert.strictEqual(job.result.fee, 20);
    // the one-click console URL: the banner's own URL with a fresh admin token in the fragment
    const c = up.output.match(/console: +(http:\/\/127\.0\.0\.1:(\d+)\/)#token=([\w-]+\.[\w-]+\.[\w-]+)&view=queues\n/);
    assert.ok(c, `banner prints the console URL:\n${up.output}`);
    assert.strictEqual(Number(c[2]), port);
    const claims = JSON.parse(Buffer.from(c[3].split('.')[1], 'base64url'));
    assert.strictEqual(claims.role, 'admin');
    const queues = await fetch(`${base}/admin/queues`, { headers: { Authorization: `Bearer ${c[3]}` } });
    assert.strictEqual(queues.status, 200, 'the console token is an admin token the gateway accepts');
    up.kill('SIGINT');
    assert.deepStrictEqual(await up.exited, { code: 0, signal: null });
    // 'exit' can come before the last of its output is read: wait for the lines
    await waitFor(() => /agent .* offline/.test(up.output) && /up +stopped/.test(up.output),
      { what: 'the offline and stopped lines' });
    assert.ok(fs.existsSync(path.join(dir, 'appendonlydir')), 'AOF kept in the data dir');
  } finally {
    if (up.exitCode === null) up.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a second `up` on the same data directory refuses and leaves the first one whole', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-up-'));
  const first = startSwitchboard(['up', '--port', '0'], { SB_DATA_DIR: dir }, 'up1');
  try {
    const port = await bannerPort(first);
    const second = await runSwitchboard(['up', '--port', '0'], { SB_DATA_DIR: dir });
    assert.strictEqual(second.code, 1, second.stderr);
    assert.match(second.stderr, new RegExp(`${dir} is in use by another \`switchboard up\` \\(pid ${first.pid}\\)`));
    assert.doesNotMatch(second.stderr, /redis-server|listening/, 'it started nothing');
    assert.ok(fs.existsSync(path.join(dir, 'redis.sock')), 'the first one\'s socket is still there');
    const r = await runSwitchboard(['enqueue', '--wait', '--timeout', '30', '{"amount":100}'],
      { REDIS_URL: `unix://${path.join(dir, 'redis.sock')}` });
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);
    await stopUp(first);
    assert.strictEqual(first.exitCode, 0);
  } finally {
    if (first.exitCode === null) first.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a taken port: the gateway exits 1, and `up` says so and exits 1', async () => {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const { port } = blocker.address();
  const redis = await startRedis();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-up-'));
  try {
    const gw = await runSwitchboard(['gateway', '--port', String(port), '--bind', '127.0.0.1'],
      { REDIS_URL: redis.url, JWT_SECRET: 's' });
    assert.strictEqual(gw.code, 1, gw.stderr);
    assert.match(gw.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}`));
    assert.doesNotMatch(gw.stderr, /listening on/);
    const up = await runSwitchboard(['up', '--port', String(port)], { SB_DATA_DIR: dir });
    assert.strictEqual(up.code, 1, up.stderr);
    assert.match(up.stderr, /the gateway did not start listening/);
    assert.doesNotMatch(up.stdout, /switchboard is up/);
  } finally {
    blocker.close();
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('development mode reachable from other hosts is announced loudly', async () => {
  const redis = await startRedis();
  const gw = startSwitchboard(['gateway', '--port', '0', '--dev'], { REDIS_URL: redis.url, JWT_SECRET: 's' });
  try {
    await gw.waitForOutput(/listening on http:\/\/0\.0\.0\.0:(\d+)/);
    const port = Number(gw.output.match(/listening on http:\/\/0\.0\.0\.0:(\d+)/)[1]);
    assert.ok(port > 0, 'port 0 is replaced by the real one');
    await gw.waitForOutput(/WARNING: development mode is reachable from other hosts/);
    assert.strictEqual((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    gw.kill('SIGTERM');
    assert.deepStrictEqual(await gw.exited, { code: 0, signal: null });
  } finally {
    if (gw.exitCode === null) gw.kill('SIGKILL');
    await redis.stop();
  }
});
