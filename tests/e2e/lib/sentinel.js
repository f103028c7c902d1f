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
const { freePort, track, waitFor } = require('./harness');

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

module.exports = { ask, startSentinel, waitSentinelsReady };
