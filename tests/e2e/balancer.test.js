// Several gateways behind a real load balancer: deploy/haproxy.cfg and deploy/nginx.conf run
// as they are (only their ports replaced) in front of two gateways and two agents on one
// Redis. For each balancer: long-polling through it (sticky), WebSocket through it, a POST
// taken by one gateway reaching the socket held by the other, and a gateway killed while
// jobs are being posted: its clients reconnect through the balancer to the other gateway and
// every job's `done` arrives, live or by replay. A poll whose session lives in the other
// gateway gets Engine.IO's {"code":1,"message":"Session ID unknown"} (400).
// A balancer that is not installed is skipped with the reason.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const jwt = require('jsonwebtoken');
const { startRedis, startSwitchboard, freePort, waitFor, track } = require('./lib/harness');
const { recordingSocket } = require('./lib/sio');

const SECRET = 'e2e-balancer-secret';
const DEPLOY = path.resolve(__dirname, '../../deploy');
let redis, agents = [], gws = {}, ports = {}, tmp;
const sockets = new Set();
let seq = 0;

function user() {
  const pk = `LB-${process.pid}-${++seq}`;
  return { pk, token: jwt.sign({ sub: pk, publicKey: pk, role: 'user' }, SECRET, { expiresIn: '1h' }) };
}
const env = () => ({ JWT_SECRET: SECRET, REDIS_URL: redis.url, RATE_LIMIT: '100000' });

async function startGateway(name) {
  const g = startSwitchboard(['gateway', '--port', String(ports[name]), '--bind', '127.0.0.1'],
    { ...env(), TRUSTED_PROXIES: '127.0.0.1' }, name);
  await g.waitForOutput(/subscribed to agent:rebalance:status/);
  gws[name] = g;
}

async function post(base, token) {
  const r = await fetch(`${base}/api/v1/agent/rebalance`, { method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ amount: 100 }) });
  const text = await r.text();
  assert.strictEqual(r.status, 202, text);
  return JSON.parse(text).jobId;
}

async function opened(name) {
  const t = await (await fetch(`http://127.0.0.1:${ports[name]}/metrics`)).text();
  const m = t.match(/^gateway_engineio_opened_total (\d+)/m);
  return m ? Number(m[1]) : 0;
}

function which(cmd) {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' }); return true; } catch { return false; }
}

// The deploy/ file with the test's ports, started in the foreground.
async function startBalancer(kind) {
  const port = await freePort();
  const conf = path.join(tmp, `${kind}.conf`);
  let text = fs.readFileSync(path.join(DEPLOY, kind === 'haproxy' ? 'haproxy.cfg' : 'nginx.conf'), 'utf8');
  text = text.replace(/127\.0\.0\.1:8080/g, `127.0.0.1:${port}`)
    .replace(/127\.0\.0\.1:3001/g, `127.0.0.1:${ports.gw1}`)
    .replace(/127\.0\.0\.1:3002/g, `127.0.0.1:${ports.gw2}`);
  fs.writeFileSync(conf, text);
  const args = kind === 'haproxy' ? ['-db', '-f', conf]
    : ['-p', tmp, '-c', conf, '-g', `daemon off; pid ${tmp}/nginx.pid; error_log stderr warn;`];
  if (kind === 'nginx') for (const d of ['logs']) fs.mkdirSync(path.join(tmp, d), { recursive: true });
  const p = track(spawn(kind, args, { stdio: ['ignore', 'pipe', 'pipe'] }), kind);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(async () => {
    try { return (await fetch(`${base}/healthz`)).status === 200; } catch { return false; }
  }, { what: `${kind} to forward /healthz` });
  return { p, base };
}

test.before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-lb-'));
  redis = await startRedis();
  ports.gw1 = await freePort();
  ports.gw2 = await freePort();
  await startGateway('gw1');
  await startGateway('gw2');
  for (let i = 0; i < 2; i++)
    agents.push(startSwitchboard(['agent', '--concurrency', '4'], env(), `agent${i}`));
});

test.after(async () => {
  for (const s of sockets) s.disconnect();
  for (const p of [...Object.values(gws), ...agents]) if (p.exitCode === null) { p.kill('SIGTERM'); await p.exited; }
  await redis.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('a poll whose session lives in the other gateway: 400 Session ID unknown', async () => {
  const hs = await (await fetch(`http://127.0.0.1:${ports.gw1}/socket.io/?EIO=4&transport=polling`)).text();
  const sid = JSON.parse(hs.slice(1)).sid;
  const r = await fetch(`http://127.0.0.1:${ports.gw2}/socket.io/?EIO=4&transport=polling&sid=${sid}`);
  assert.strictEqual(r.status, 400);
  assert.deepStrictEqual(await r.json(), { code: 1, message: 'Session ID unknown' });
});

for (const kind of ['haproxy', 'nginx']) {
  test(`${kind}: polling (sticky), WebSocket, cross-gateway POST, a gateway killed mid-load`, async (t) => {
    if (!which(kind)) return t.skip(`${kind} is not installed (apt-get install ${kind})`);
    const lb = await startBalancer(kind);
    try {
      await t.test('long-polling through the balancer stays on one gateway', async () => {
        const before = (await opened('gw1')) + (await opened('gw2'));
        const list = [];
        for (let i = 0; i < 4; i++) {
          const u = user();
          const s = recordingSocket(sockets, lb.base, u.token, { transports: ['polling'], withCredentials: true });
          list.push({ u, s });
        }
        for (const { s } of list) await s.connected$();
        for (const { u, s } of list) {
          const id = await post(lb.base, u.token);
          await s.next('rebalance:done', (d) => d.jobId === id);
          assert.strictEqual(s.connects, 1, 'the session must not have been lost');
          s.disconnect();
        }
        // every session opened once, on one gateway (a non-sticky poll would open new ones)
        const after = (await opened('gw1')) + (await opened('gw2'));
        assert.strictEqual(after - before, 4);
      });

      await t.test('WebSocket through the balancer; a POST on either gateway reaches it', async () => {
        const u = user();
        const s = recordingSocket(sockets, lb.base, u.token, { transports: ['websocket'] });
        await s.connected$();
        for (const g of ['gw1', 'gw2']) {
          const id = await post(`http://127.0.0.1:${ports[g]}`, u.token);
          await s.next('rebalance:created', (d) => d.jobId === id);
          await s.next('rebalance:done', (d) => d.jobId === id);
        }
        s.disconnect();
      });

      await t.test('a gateway killed mid-load: clients move to the other, nothing missed', async () => {
        const users = [];
        for (let i = 0; i < 8; i++) {
          const u = user();
          const s = recordingSocket(sockets, lb.base, u.token, { transports: ['websocket'] });
          users.push({ u, s, jobs: [] });
        }
        for (const { s } of users) await s.connected$();
        const victim = kind === 'haproxy' ? 'gw1' : await (async () => {
          // nginx hashes the client address: all loopback clients are on one gateway
          const t1 = await (await fetch(`http://127.0.0.1:${ports.gw1}/metrics`)).text();
          return /^gateway_socketio_connections [1-9]/m.test(t1) ? 'gw1' : 'gw2';
        })();
        let posting = true;
        const load = (async () => {
          while (posting) {
            for (const x of users) {
              try { x.jobs.push(await post(lb.base, x.u.token)); } catch { /* the killed one */ }
            }
          }
        })();
        await waitFor(() => users.every((x) => x.jobs.length >= 2), { what: 'jobs before the kill' });
        gws[victim].kill('SIGKILL');
        await gws[victim].exited;
        await waitFor(() => users.every((x) => x.s.connects >= 1 && x.s.connected), {
          what: 'every client connected again', timeoutMs: 20000 });
        await waitFor(() => users.every((x) => x.jobs.length >= 6), { what: 'jobs after the kill', timeoutMs: 20000 });
        posting = false;
        await load;
        const moved = users.filter((x) => x.s.connects > 1).length;
        assert.ok(moved > 0, 'some clients were on the killed gateway and reconnected');
        for (const x of users)
          for (const id of x.jobs) await x.s.next('rebalance:done', (d) => d.jobId === id, `done ${id}`);
        for (const x of users) x.s.disconnect();
        await startGateway(victim); // for the next balancer
      });
    } finally {
      lb.p.kill('SIGTERM');
      await lb.p.exited;
    }
  });
}

// SIO_CONNECT_RATE_IP counts the client's address: behind a trusted proxy the one its
// X-Forwarded-For names, else the TCP peer (a client cannot pick its own address).
test('per-IP connect limit: X-Forwarded-For counts from TRUSTED_PROXIES only', async () => {
  const handshake = async (port, xff) => (await fetch(
    `http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`,
    { headers: xff ? { 'x-forwarded-for': xff } : {} })).status;
  for (const trusted of [true, false]) {
    const port = await freePort();
    const g = startSwitchboard(['gateway', '--port', String(port), '--bind', '127.0.0.1'],
      { ...env(), SIO_CONNECT_RATE_IP: '2', ...(trusted ? { TRUSTED_PROXIES: '127.0.0.0/8' } : {}) },
      trusted ? 'gw-trusting' : 'gw-plain');
    try {
      await g.waitForOutput(/listening on/);
      const got = [];
      for (const xff of ['203.0.113.1', '203.0.113.1', '203.0.113.1', '203.0.113.2', '198.51.100.9, 203.0.113.3'])
        got.push(await handshake(port, xff));
      // trusted: two per forwarded address; plain: two for 127.0.0.1 whatever the header says
      assert.deepStrictEqual(got, trusted ? [200, 200, 429, 200, 200] : [200, 200, 429, 429, 429]);
    } finally {
      g.kill('SIGTERM');
      await g.exited;
    }
  }
});
