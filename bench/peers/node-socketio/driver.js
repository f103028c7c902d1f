// Driver of bench/socketio_fanout.sh for one server: connects N raw clients through W worker
// processes (client.js), measures the server's RSS per idle connection, then fan-out:
//   many rooms — R rounds of one status PUBLISH per user (agent:rebalance:status, pipelined),
//                each delivered to that user's one socket;
//   one room   — M PUBLISHes of an event to room `admins` (agent:rebalance:events), each
//                delivered to all N sockets.
// Delivery is counted at the clients; the rate is deliveries / (last delivery − first publish),
// and per server CPU-second: deliveries / (the server's utime + stime over the same phase),
// which stays meaningful when the load generator competes with the server for the cores.
// The server may be several processes on one Redis (comma-separated URLs and PIDs): worker i
// connects to URL i mod K, and RSS and CPU are summed over the PIDs.
// Prints one JSON line with the results.
'use strict';
const { fork, spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const Redis = require('ioredis');

const [name, urlS, pidS, nS, wS, mS, rS, redisUrl, secret, addrs] = process.argv.slice(2);
const N = Number(nS), W = Number(wS), M = Number(mS), R = Number(rS);
const urls = urlS.split(','), pids = pidS.split(',');
const sum = (f) => pids.reduce((s, pid) => s + f(pid), 0);
const rssKb = () => sum((pid) => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]));
// utime + stime of the server in seconds (clock ticks of 1/100 s on Linux)
const cpuS = () => sum((pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
});
// the load generator's own CPU (the client workers and this driver, which publishes), seconds
const loadCpuS = () => [...workers.map((w) => String(w.pid)), 'self'].reduce((a, pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return a + (Number(f[11]) + Number(f[12])) / 100;
}, 0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The many-rooms publisher: PUBLISH commands written as raw RESP on a connection of its own,
// one write and one wait for every reply per batch (the pipelining of before), without a
// client library's per-command objects and promises — the publisher shares the two cores
// with the server under test, so every µs it spends per message is taken from that server.
// Every reply is one line (`:<receivers>` or `-ERR ...`); errors are counted and fail the run.
function rawPublisher(redisUrl) {
  const u = new URL(redisUrl);
  const sock = net.connect(Number(u.port || 6379), u.hostname || '127.0.0.1');
  sock.setNoDelay(true);
  let pending = 0, errors = 0, atLineStart = true, waiter = null;
  const settle = (err) => {
    const w = waiter;
    waiter = null;
    if (w) (err ? w.reject(err) : w.resolve());
  };
  sock.on('data', (d) => {
    for (let i = 0; i < d.length; i++) {
      if (atLineStart && d[i] === 0x2d) errors++; // '-'
      atLineStart = d[i] === 0x0a;
      if (atLineStart && --pending === 0) settle(errors ? new Error(`${errors} PUBLISH errors`) : null);
    }
  });
  sock.on('error', (e) => settle(e));
  const ready = new Promise((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  const chan = (c) => `$${Buffer.byteLength(c)}\r\n${c}\r\n`;
  return {
    ready,
    // resolves once Redis answered every message; rejects if any PUBLISH failed
    publish(channel, msgs) {
      const head = `*3\r\n$7\r\nPUBLISH\r\n${chan(channel)}`;
      let out = '';
      for (const m of msgs) out += `${head}$${Buffer.byteLength(m)}\r\n${m}\r\n`;
      pending += msgs.length;
      return new Promise((resolve, reject) => {
        waiter = { resolve, reject };
        sock.write(out);
      });
    },
    close() { sock.end(); },
  };
}

const workers = [];
function counts() {
  return Promise.all(workers.map((w) => new Promise((resolve) => {
    w.once('message', resolve);
    w.send({ cmd: 'count' });
  }))).then((cs) => cs.reduce((a, c) => ({ received: a.received + c.received,
    connected: a.connected + c.connected, errors: a.errors + c.errors,
    settled: a.settled + c.settled }), { received: 0, connected: 0, errors: 0, settled: 0 }));
}

async function waitReceived(target, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const c = await counts();
    if (c.received >= target || Date.now() > deadline) return { c, t: Date.now() };
    await sleep(5);
  }
}

// PROBE_CMD (optional): a shell command run for the many-rooms phase with $PIDS set to the
// server's PIDs (e.g. `perf record -g -p $PIDS -o gw.data`), stopped with SIGINT at its end.
function startProbe() {
  if (!process.env.PROBE_CMD) return null;
  const p = spawn('sh', ['-c', `exec ${process.env.PROBE_CMD}`],
    { stdio: 'inherit', env: { ...process.env, PIDS: pids.join(',') } });
  spawnSync('sleep', ['0.5']); // let it attach before the first PUBLISH
  return p;
}
function stopProbe(p) {
  if (!p) return Promise.resolve();
  return new Promise((resolve) => { p.on('exit', resolve); p.kill('SIGINT'); });
}

async function main() {
  const redis = new Redis(redisUrl);
  const rss0 = rssKb();
  const t0 = Date.now();
  const per = Math.ceil(N / W);
  for (let i = 0; i < W; i++) {
    const count = Math.min(per, N - i * per);
    workers.push(fork(path.join(__dirname, 'client.js'),
      [urls[i % urls.length], String(count), String(i * per), '0', secret, addrs], { stdio: 'inherit' }));
  }
  let c;
  for (;;) {
    c = await counts();
    if (c.settled >= N) break;
    if (Date.now() - t0 > 600000) throw new Error(`${name}: connecting timed out (${JSON.stringify(c)})`);
    await sleep(100);
  }
  const connectS = (Date.now() - t0) / 1000;
  await sleep(1500);
  const rss1 = rssKb();
  const res = { name, n: N, processes: pids.length, rounds: R, messages: M, connected: c.connected, errors: c.errors, connectS,
    rssBaseMb: rss0 / 1024, rssMb: rss1 / 1024, kbPerConn: (rss1 - rss0) / c.connected };

  // many rooms: one status message per user per round
  const pub = rawPublisher(redisUrl);
  await pub.ready;
  let base = (await counts()).received;
  let start = Date.now();
  // STATUS_FORMAT=agent: the status as Switchboard's agents publish it (with its timestamp and
  // "recorded":true: the record is written already); seed (default): as a publish-only agent
  // does, which a gateway also applies to the job's record (interop.c: one GET per status)
  const tail = process.env.STATUS_FORMAT === 'agent'
    ? `,"timestamp":"${new Date().toISOString()}","recorded":true` : '';
  let cpu0 = cpuS();
  const load0 = loadCpuS();
  const probe = startProbe();
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < N; i += 1000) {
      const msgs = [];
      for (let j = i; j < Math.min(N, i + 1000); j++) { // JSON.stringify's bytes, for these keys
        msgs.push(`{"jobId":"${r}-b${j}","status":"processing","userId":"BENCH-${j}"${tail}}`);
      }
      await pub.publish('agent:rebalance:status', msgs);
    }
  }
  pub.close();
  let w = await waitReceived(base + c.connected * R, 120000);
  await stopProbe(probe);
  res.manyRoomsDelivered = w.c.received - base;
  res.manyRoomsPerS = res.manyRoomsDelivered / ((w.t - start) / 1000);
  res.manyRoomsPerCpuS = res.manyRoomsDelivered / Math.max(0.01, cpuS() - cpu0);
  res.manyRoomsLoadUs = ((loadCpuS() - load0) * 1e6) / Math.max(1, res.manyRoomsDelivered);

  // one room: M events to `admins`, each to every socket
  base = w.c.received;
  start = Date.now();
  cpu0 = cpuS();
  const p = redis.pipeline();
  for (let m = 0; m < M; m++) {
    p.publish('agent:rebalance:events', JSON.stringify({ event: 'rebalance:bench',
      room: 'admins', data: { seq: m, note: 'fan-out to every connected admin' } }));
  }
  await p.exec();
  w = await waitReceived(base + c.connected * M, 120000);
  res.oneRoomDelivered = w.c.received - base;
  res.oneRoomPerS = res.oneRoomDelivered / ((w.t - start) / 1000);
  res.oneRoomPerCpuS = res.oneRoomDelivered / Math.max(0.01, cpuS() - cpu0);
  res.rssAfterMb = rssKb() / 1024;
  console.log(JSON.stringify(res));
  for (const wk of workers) wk.send({ cmd: 'exit' });
  redis.disconnect();
}
main().catch((e) => { console.error(e); process.exit(1); });
