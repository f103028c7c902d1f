// `switchboard up` as a new user runs it (what `make run` does): a private redis-server, a
// gateway and an agent come up, the printed token works against the printed URL, a job goes
// through, and Ctrl-C (SIGINT) stops everything cleanly, Redis last.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort, startSwitchboard, waitFor } = require('./lib/harness');

test('switchboard up: private redis, gateway and agent; a job goes through; Ctrl-C stops all', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-up-'));
  const port = await freePort();
  const env = { SB_DATA_DIR: dir, PORT: String(port) };
  // a new user has no Redis and no secret configured: `up` brings its own
  for (const k of ['REDIS_URL', 'REDIS_HOST', 'REDIS_PORT', 'JWT_SECRET']) delete process.env[k];
  const up = startSwitchboard(['up', '--concurrency', '2'], env, 'up');
  try {
    await up.waitForOutput(/Ctrl-C stops everything/);
    const m = up.output.match(/user token \(demo-user[^\n]*\n\s+(\S+)/);
    assert.ok(m, 'banner prints a user token');
    const token = m[1];
    assert.match(up.output, new RegExp(`http://localhost:${port}/`));
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
