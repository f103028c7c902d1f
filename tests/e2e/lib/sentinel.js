// Redis Sentinel helpers for tests: starts a real `redis-server --sentinel` on a free loopback
// port watching a master (plain TCP, or TLS only with opts.tls = {cert, key, ca}: tls-port,
// port 0, tls-replication yes so it talks TLS to the master and the other Sentinels), and asks
// a server one command through a short-lived ioredis client.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const Redis = require('ioredis');
const { freePort, startSwitchboard, track, waitFor } = require('./harness');

const REDIS_SERVER = process.env.SB_REDIS_SERVER || 'redis-server';

// Runs fn(client) on a short-lived ioredis client of port (TLS trusting tls.ca when given);
// null when it cannot.
async function ask(port, fn, tls) {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...(tls ? { tls: { ca: fs.readFileSync(tls.ca), rejectUnauthorized: false } } : {}) });
  c.on('error', () => {});
  try { await c.connect(); return await fn(c); } catch { return null; } finally { c.disconnect(); }
}

// A Sentinel monitoring master at 127.0.0.1:masterPort under name with quorum; opts.tls as above.
async function startSentinel(name, masterPort, { quorum = 2, tls } = {}) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-sentinel-'));
  const conf = path.join(dir, 'sentinel.conf');
  const listen = tls ? ['port 0', `tls-port ${port}`, `tls-cert-file ${tls.cert}`,
    `tls-key-file ${tls.key}`, `tls-ca-cert-file ${tls.ca}`, 'tls-replication yes',
    'tls-auth-clients no'] : [`port ${port}`];
  fs.writeFileSync(conf, [...listen, 'bind 127.0.0.1', `dir ${dir}`,
    `sentinel monitor ${name} 127.0.0.1 ${masterPort} ${quorum}`,
    `sentinel down-after-milliseconds ${name} 1000`,
    `sentinel failover-timeout ${name} 4000`,
    `sentinel parallel-syncs ${name} 1`, ''].join('\n'));
  const proc = track(spawn(REDIS_SERVER, [conf, '--sentinel', '--loglevel',
    process.env.SB_SENTINEL_LOGLEVEL || 'warning'], { stdio: ['ignore', 'pipe', 'pipe'] }),
  `sentinel-${port}`);
  const s = { port, dir, proc, tls };
  s.ask = (fn) => ask(port, fn, tls);
  s.masterOf = () => s.ask((c) => c.call('SENTINEL', 'get-master-addr-by-name', name));
  s.stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await proc.exited; }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  await waitFor(async () => (await s.ask((c) => c.ping())) === 'PONG',
    { what: `Sentinel ${port} to answer PING` });
  return s;
}

// Waits until every Sentinel knows `replicas` replicas and the other Sentinels of name.
async function waitSentinelsReady(sentinels, name, replicas) {
  await waitFor(async () => {
    for (const s of sentinels) {
      const reps = await s.ask((c) => c.call('SENTINEL', 'replicas', name));
      const others = await s.ask((c) => c.call('SENTINEL', 'sentinels', name));
      if (!reps || reps.length !== replicas || !others || others.length !== sentinels.length - 1)
        return false;
    }
    return true;
  }, { timeoutMs: 20000, intervalMs: 100, what: 'the Sentinels to know the replicas and each other' });
}

/* A gateway and two `--exec` agents on the master the Sentinels watch (acknowledged writes wait
 * for one replica; short leases and intervals), pushed to procs for the caller to stop, once
 * the gateway listens. Returns { env, port, gw }. */
async function startSentinelSystem(sentinels, master, secret, procs) {
  const env = { REDIS_SENTINELS: sentinels.map((s) => `127.0.0.1:${s.port}`).join(','),
    REDIS_SENTINEL_MASTER: master, REDIS_WAIT_REPLICAS: '1', REDIS_WAIT_TIMEOUT_MS: '500',
    JWT_SECRET: secret, BIND: '127.0.0.1', RATE_LIMIT: '1000000', RETRY_BACKOFF_MS: '20',
    AGENT_STATUS_TTL: '2', HEARTBEAT_INTERVAL: '1', RECOVERY_INTERVAL: '1' };
  const port = await freePort();
  const gw = startSwitchboard(['gateway'], { ...env, PORT: String(port) }, 'gateway');
  procs.push(gw);
  await gw.waitForOutput(/listening on/);
  for (let i = 0; i < 2; i++)
    procs.push(startSwitchboard(['agent', '--concurrency', '2', '--exec',
      'sleep 0.01; echo \'{"ok":true}\''], env, `agent-${i}`));
  return { env, port, gw };
}

module.exports = { ask, startSentinel, startSentinelSystem, waitSentinelsReady };
