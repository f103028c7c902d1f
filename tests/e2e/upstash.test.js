// Upstash REST transport (issue 17, seed 002): with only UPSTASH_REDIS_REST_URL and
// UPSTASH_REDIS_REST_TOKEN set, `enqueue`, `job`, `queue`, `metrics` and `events publish` work
// through a stand-in written here that speaks Upstash's documented REST protocol — POST / with
// a JSON command array, POST /pipeline with an array of them, `Authorization: Bearer`,
// {"result":…} / {"error":…} (HTTP 400 for a failed single command), strings base64-encoded
// except "OK" when the client sends `Upstash-Encoding: base64` — in front of a real
// redis-server. Also: a wrong token is one line about the token (exit 3), the verbs that hold a
// connection refuse REST with a clear sentence (exit 2), and one verb run keeps one
// HTTP connection alive for all its requests.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const Redis = require('ioredis');
const { startRedis, runSwitchboard } = require('./lib/harness');

const TOKEN = 'upstash-test-token';

// Encodes one ioredis (buffer) reply the way Upstash does.
function encode(v, b64) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) return v.map((x) => encode(x, b64));
  const buf = Buffer.isBuffer(v) ? v : Buffer.from(String(v));
  if (buf.toString() === 'OK') return 'OK';
  return b64 ? buf.toString('base64') : buf.toString();
}

// The stand-in: resolves {url, stats, close}.
async function startUpstash(redisUrl) {
  const redis = new Redis(redisUrl);
  const stats = { requests: 0, pipelines: 0, connections: 0, commands: [] };
  const run = async (cmd, b64) => {
    if (!Array.isArray(cmd) || cmd.length === 0 || cmd.some((a) => typeof a !== 'string' && typeof a !== 'number'))
      return { error: 'ERR bad command' };
    stats.commands.push(String(cmd[0]).toUpperCase());
    try { return { result: encode(await redis.callBuffer(...cmd.map(String)), b64) }; } catch (e) { return { error: e.message }; }
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', async () => {
      stats.requests++;
      const send = (status, obj) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(401, { error: 'Unauthorized' });
      if (req.method !== 'POST') return send(405, { error: 'Method Not Allowed' });
      const b64 = req.headers['upstash-encoding'] === 'base64';
      let doc;
      try { doc = JSON.parse(body); } catch { return send(400, { error: 'ERR failed to parse command' }); }
      if (req.url === '/pipeline') {
        stats.pipelines++;
        if (!Array.isArray(doc)) return send(400, { error: 'ERR bad pipeline' });
        const out = [];
        for (const cmd of doc) out.push(await run(cmd, b64));
        return send(200, out);
      }
      if (req.url !== '/') return send(404, { error: 'not found' });
      const r = await run(doc, b64);
      return send(r.error ? 400 : 200, r);
    });
  });
  server.on('connection', () => { stats.connections++; });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stats,
    close: async () => { redis.disconnect(); await new Promise((r) => server.close(r)); server.closeAllConnections?.(); } };
}

test('upstash REST: producer and read-side verbs, token errors, held-connection verbs refused', async (t) => {
  const redis = await startRedis();
  const up = await startUpstash(redis.url);
  const r = redis.client();
  // only the Upstash settings: nothing else about Redis in the environment
  const base = { ...process.env };
  for (const k of Object.keys(base)) if (k.startsWith('REDIS_')) delete base[k];
  const env = { ...base, UPSTASH_REDIS_REST_URL: up.url, UPSTASH_REDIS_REST_TOKEN: TOKEN };
  const sb = (args, extra = {}) => runSwitchboard(args, { ...env, ...extra });
  try {
    await t.test('enqueue writes the job atomically through one script call', async () => {
      up.stats.connections = 0; up.stats.commands = [];
      const res = await sb(['enqueue', '--user', 'PK-rest', '{"amount":42}']);
      assert.strictEqual(res.code, 0, res.stderr);
      const id = res.stdout.trim();
      assert.match(id, /^\d+-[0-9a-f]+$/);
      const rec = JSON.parse(await r.get(`agent:rebalance:job:${id}`));
      assert.strictEqual(rec.status, 'queued');
      assert.strictEqual(rec.payload.amount, 42);
      assert.deepStrictEqual(await r.lrange('agent:rebalance:jobs', 0, -1), [id]);
      assert.ok(up.stats.commands.some((c) => c === 'EVALSHA' || c === 'EVAL'), up.stats.commands.join(' '));
      assert.strictEqual(up.stats.connections, 1, 'one kept-alive HTTP connection for the whole run');

      const job = await sb(['job', '--json', id]);
      assert.strictEqual(job.code, 0, job.stderr);
      assert.strictEqual(JSON.parse(job.stdout).jobId, id);
      const missing = await sb(['job', `${id.split('-')[0]}-deadbeef`]);
      assert.strictEqual(missing.code, 1, missing.stderr);

      const queue = await sb(['queue']);
      assert.strictEqual(queue.code, 0, queue.stderr);
      assert.match(queue.stdout, new RegExp(id));

      const metrics = await sb(['metrics', '--json']);
      assert.strictEqual(metrics.code, 0, metrics.stderr);
      assert.ok(JSON.parse(metrics.stdout), 'metrics JSON');
    });

    await t.test('events publish appends to the stream', async () => {
      const res = await sb(['events', 'publish', 'order.created', '{"order":7,"note":"é ✓"}']);
      assert.strictEqual(res.code, 0, res.stderr);
      const entries = await r.xrange('agent:stream:order.created', '-', '+');
      assert.strictEqual(entries.length, 1);
      const fields = entries[0][1];
      assert.match(fields[fields.indexOf('data') + 1], /"note":"é ✓"/);
    });

    await t.test('a wrong token is one line about the token, exit 3, nothing written', async () => {
      const before = await r.dbsize();
      const res = await sb(['enqueue', '{"amount":1}'], { UPSTASH_REDIS_REST_TOKEN: 'wrong' });
      assert.strictEqual(res.code, 3);
      assert.strictEqual(res.stderr.trim().split('\n').length, 1, res.stderr);
      assert.match(res.stderr, /401.*UPSTASH_REDIS_REST_TOKEN/);
      assert.strictEqual(await r.dbsize(), before);
    });

    await t.test('verbs that hold a connection say they need a TCP URL', async () => {
      for (const args of [['agent'], ['gateway'], ['enqueue', '--wait', '{"amount":1}'],
        ['events', 'consume', 'order.created'], ['presence']]) {
        const res = await sb(args, { JWT_SECRET: 'x' });
        assert.strictEqual(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
        assert.match(res.stderr, /needs a TCP connection to Redis.*REDIS_URL/, args.join(' '));
      }
      const half = await sb(['job', '1-a'], { UPSTASH_REDIS_REST_TOKEN: '' });
      assert.strictEqual(half.code, 2);
      assert.match(half.stderr, /UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN go together/);
    });
  } finally {
    r.disconnect();
    await up.close();
    await redis.stop();
  }
});
