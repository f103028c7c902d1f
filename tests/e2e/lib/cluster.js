// A private Redis Cluster on loopback for e2e tests and the cluster bench: `masters` redis-servers
// started with --cluster-enabled yes on free ports (plus `replicas` replicas per master), joined
// with `redis-cli --cluster create ... --cluster-yes`, then waited on until every node says
// cluster_state:ok. Every server is killed on exit (harness.js tracks it).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, execFile } = require('node:child_process');
const Redis = require('ioredis');
const { freePort, track, waitFor } = require('./harness');

const REDIS_SERVER = process.env.SB_REDIS_SERVER || 'redis-server';
const REDIS_CLI = process.env.SB_REDIS_CLI || path.join(path.dirname(REDIS_SERVER), 'redis-cli');

// Runs redis-cli with args; resolves its stdout, rejects with its output on failure.
function redisCli(args, timeoutMs = 120000) {
  const cli = fs.existsSync(REDIS_CLI) ? REDIS_CLI : 'redis-cli';
  return new Promise((resolve, reject) => {
    execFile(cli, args, { timeout: timeoutMs, maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')}: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

// Runs fn(client) on a short-lived plain (not cluster-aware) client of port.
async function onNode(port, fn) {
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0,
    retryStrategy: () => null });
  c.on('error', () => {});
  try { await c.connect(); return await fn(c); } finally { c.disconnect(); }
}

// Starts the cluster. Returns {seeds, nodes: [{port, proc}], masters(), node(port, fn),
// kill(port), stop()}.
async function startCluster({ masters = 3, replicas = 0, args = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-e2e-cluster-'));
  const nodes = [];
  for (let i = 0; i < masters * (1 + replicas); i++) {
    const port = await freePort();
    const ndir = path.join(dir, String(port));
    fs.mkdirSync(ndir);
    const proc = track(spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes', '--cluster-config-file', path.join(ndir, 'nodes.conf'),
      '--cluster-node-timeout', '2000', '--dir', ndir, '--save', '', '--appendonly', 'no',
      '--loglevel', 'warning', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
    `redis-${port}`);
    nodes.push({ port, proc });
  }
  for (const n of nodes) {
    await waitFor(async () => {
      try { return (await onNode(n.port, (c) => c.ping())) === 'PONG'; } catch { return false; }
    }, { what: `redis-server :${n.port} to answer PING` });
  }
  if (masters < 3 && replicas === 0) { // --cluster create wants three masters: by hand
    const per = Math.ceil(16384 / masters);
    for (let i = 0; i < masters; i++) {
      await onNode(nodes[i].port, (c) => c.call('CLUSTER', 'ADDSLOTSRANGE', String(i * per),
        String(Math.min(16383, (i + 1) * per - 1))));
      if (i > 0) await onNode(nodes[i].port, (c) => c.call('CLUSTER', 'MEET', '127.0.0.1', String(nodes[0].port)));
    }
  } else {
    await redisCli(['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes']);
  }
  const cl = {
    dir,
    nodes,
    seeds: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
    node: (port, fn) => onNode(port, fn),
    // the live masters' ports, from CLUSTER NODES of any live node
    async masters() {
      for (const n of nodes) {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) continue;
        try {
          const text = await onNode(n.port, (c) => c.call('CLUSTER', 'NODES'));
          return text.split('\n').filter((l) => /\bmaster\b/.test(l) && !/\bfail\b/.test(l) &&
            l.split(' ')[8] !== undefined)
            .map((l) => Number(l.split(' ')[1].split('@')[0].split(':')[1]));
        } catch { /* next */ }
      }
      return [];
    },
    async kill(port) {
      const n = nodes.find((x) => x.port === port);
      n.proc.kill('SIGKILL');
      await n.proc.exited;
    },
    async stop() {
      for (const n of nodes) if (n.proc.exitCode === null && n.proc.signalCode === null) {
        n.proc.kill('SIGKILL');
        await n.proc.exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitFor(async () => {
    for (const n of nodes) {
      const info = await onNode(n.port, (c) => c.call('CLUSTER', 'INFO')).catch(() => '');
      if (!/cluster_state:ok/.test(info) || !/cluster_slots_ok:16384/.test(info)) return false;
    }
    return true;
  }, { timeoutMs: 60000, intervalMs: 100, what: 'cluster_state:ok on every node' });
  // replicas in sync (WAIT 1 answers at once): every master sees its replicas online
  await waitFor(async () => {
    for (const m of await cl.masters()) {
      const info = await onNode(m, (c) => c.info('replication')).catch(() => '');
      const online = (info.match(/^slave\d+:.*state=online/gm) || []).length;
      if (online < replicas) return false;
    }
    return true;
  }, { timeoutMs: 60000, intervalMs: 100, what: 'replicas online' });
  return cl;
}

// CRC16-XMODEM, as Redis Cluster computes it.
function crc16(text) {
  let crc = 0;
  for (const b of Buffer.from(text)) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

// The key slot with hash tags, as Redis computes it.
function keySlot(key) {
  const s = key.indexOf('{');
  if (s >= 0) {
    const e = key.indexOf('}', s + 1);
    if (e > s + 1) key = key.slice(s + 1, e);
  }
  return crc16(key) % 16384;
}

// QUEUE_SHARDS (README "Queue shards"): the shard of a user's jobs among n, and the queue name
// of shard s of a type (the type itself for shard 0).
const shardOfUser = (publicKey, n) => (n > 1 ? crc16(publicKey) % n : 0);
const queueName = (type, s) => (s ? `${type}.${s}` : type);

module.exports = { startCluster, redisCli, keySlot, shardOfUser, queueName };
