// BullMQ peer of bench/e2e.sh, producer side: the load generator's driver for BullMQ (no
// HTTP, no Socket.IO). submit() is Queue.add of one job; it resolves when QueueEvents reports
// the job `completed` (rejects on `failed`), which is BullMQ's own "done" notification;
// answered() is called when add() returns (the submission is acknowledged).
'use strict';
const { Queue, QueueEvents } = require('bullmq');
const IORedis = require('ioredis');

async function createDriver({ redisUrl }) {
  const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('rebalance', { connection });
  const events = new QueueEvents('rebalance', { connection: { url: redisUrl } });
  const waiters = new Map(); // jobId -> {resolve, reject}
  const early = new Map();   // jobId -> outcome that arrived before add() returned
  const settle = (jobId, outcome) => {
    const w = waiters.get(jobId);
    if (!w) { early.set(jobId, outcome); return; }
    waiters.delete(jobId);
    if (outcome.ok) w.resolve(); else w.reject(new Error(outcome.error));
  };
  events.on('completed', ({ jobId }) => settle(jobId, { ok: true }));
  events.on('failed', ({ jobId, failedReason }) => settle(jobId, { ok: false, error: failedReason }));
  await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);

  return {
    name: 'bullmq',
    async submit(user, answered = () => {}) {
      const job = await queue.add('rebalance', { amount: 1000, priority: 'high' });
      answered();
      return new Promise((resolve, reject) => {
        const got = early.get(job.id);
        if (got) { early.delete(job.id); return got.ok ? resolve() : reject(new Error(got.error)); }
        waiters.set(job.id, { resolve, reject });
      });
    },
    pending: () => waiters.size,
    async close() { await events.close(); await queue.close(); connection.disconnect(); },
  };
}

module.exports = { createDriver };
