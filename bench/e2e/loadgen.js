// One load-generator process of bench/e2e.sh, driven by orchestrate.js over the fork() IPC
// channel. It owns a driver (http_sio_driver.js, or the BullMQ peer's driver.js) and runs
// jobs through it in one of two modes:
//   closed  `inflight` loops, each submitting its next job as soon as the previous one is done
//           (saturation: jobs/s is what the system sustains);
//   open    jobs released on a fixed schedule at `rate` jobs/s whatever happens (paced); each
//           job's latency is measured from its scheduled time, so a stall shows up in the
//           latency instead of silently lowering the offered rate.
// Messages in:  {cmd:'init', driver, options} · {cmd:'start', mode, inflight|rate}
//               · {cmd:'mark'} (measurement window begins) · {cmd:'stop'} (window ends; stop
//               submitting, drain) · {cmd:'close'}
// Each measured job also records where its latency went: release lag (scheduled time → the
// moment it was submitted: this process's own timer and event-loop delay), answer (submitted →
// the submission acknowledged: the 202, or BullMQ's add()), and answer → done.
// Messages out: {type:'ready'} · {type:'stopped', window:{done, latencies, lag, answer, tail},
//               posted, done,
//               failed, errors, undrained, cpuMs, loopP99 (ms: p99 of its event-loop delay)}
//               · {type:'error', message}
// Every job submitted is followed to its end: `posted` must equal `done` after the drain, and
// anything else is reported as failed (with the first few reasons).
'use strict';
const { performance, monitorEventLoopDelay } = require('node:perf_hooks');

const DRAIN_TIMEOUT_MS = Number(process.env.DRAIN_TIMEOUT_MS || 30000);
let driver;
let users = [];
let nextUser = 0;
let running = false;
let measuring = false;
const emptyWindow = () => ({ done: 0, latencies: [], lag: [], answer: [], tail: [] });
let window = emptyWindow();
const totals = { posted: 0, done: 0, failed: 0 };
const errors = [];
const outstanding = new Set();
let cpuMark = process.cpuUsage();
let loopDelay = null; // this process's event-loop delay over the window: its share of every latency

function pickUser() {
  const u = users[nextUser];
  nextUser = (nextUser + 1) % users.length;
  return u;
}

// Submits one job; latency counts from `t0` (now, or the scheduled time in open mode).
function one(t0) {
  totals.posted++;
  const sent = performance.now();
  let answeredAt = sent;
  const p = driver.submit(pickUser(), () => { answeredAt = performance.now(); }).then(() => {
    totals.done++;
    if (measuring) {
      const now = performance.now();
      window.done++;
      window.latencies.push(now - t0);
      window.lag.push(sent - t0);
      window.answer.push(answeredAt - sent);
      window.tail.push(now - answeredAt);
    }
  }, (e) => {
    totals.failed++;
    if (errors.length < 5) errors.push(e.message);
  });
  outstanding.add(p);
  return p.finally(() => outstanding.delete(p));
}

async function closedLoop() {
  while (running) await one(performance.now());
}

function openLoop(rate) {
  const interval = 1000 / rate;
  let next = performance.now();
  const tick = () => {
    if (!running) return;
    const now = performance.now();
    while (next <= now) { one(next); next += interval; }
    setTimeout(tick, Math.max(0, Math.min(1, next - performance.now())));
  };
  tick();
}

async function drain() {
  const deadline = performance.now() + DRAIN_TIMEOUT_MS;
  while (outstanding.size && performance.now() < deadline) {
    await Promise.race([Promise.allSettled([...outstanding]),
      new Promise((r) => setTimeout(r, 100))]);
  }
  return outstanding.size;
}

const handlers = {
  async init({ driver: file, options }) {
    users = options.users;
    driver = await require(file).createDriver(options);
    process.send({ type: 'ready' });
  },
  start({ mode, inflight, rate }) {
    running = true;
    if (mode === 'closed') for (let i = 0; i < inflight; i++) closedLoop();
    else openLoop(rate);
  },
  mark() {
    window = emptyWindow();
    measuring = true;
    cpuMark = process.cpuUsage();
    loopDelay = monitorEventLoopDelay({ resolution: 1 });
    loopDelay.enable();
  },
  async stop() {
    const cpu = process.cpuUsage(cpuMark);
    loopDelay.disable();
    const loopP99 = loopDelay.percentile(99) / 1e6;
    measuring = false;
    running = false;
    const w = window;
    const undrained = await drain();
    process.send({ type: 'stopped', window: w, posted: totals.posted, done: totals.done,
      failed: totals.failed + undrained, errors, undrained, cpuMs: (cpu.user + cpu.system) / 1000,
      loopP99 });
  },
  async close() {
    await driver.close();
    process.exit(0);
  },
};

process.on('message', (msg) => {
  Promise.resolve(handlers[msg.cmd](msg)).catch((e) => {
    process.send({ type: 'error', message: e.stack || e.message });
  });
});
