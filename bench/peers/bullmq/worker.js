// BullMQ peer of bench/e2e.sh, worker side: one BullMQ Worker on queue `rebalance` with
// concurrency LOOPS whose processor does the same arithmetic as the other systems' agents
// (2 % fee, no sleep). BullMQ's defaults otherwise (completed jobs kept, stalled-job checks).
// Env: REDIS_URL, LOOPS (default 1).
'use strict';
const { Worker } = require('bullmq');
const IORedis = require('ioredis');

const connection = new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
const worker = new Worker('rebalance', async (job) => {
  const { amount } = job.data;
  if (!amount || amount <= 0) throw new Error('Invalid amount');
  const fee = amount * 0.02;
  return { success: true, originalAmount: amount, fee, remainingAmount: amount - fee,
    processedAt: new Date().toISOString() };
}, { connection, concurrency: Number(process.env.LOOPS || 1) });
worker.on('error', (e) => console.error(`worker error: ${e.message}`));
worker.waitUntilReady().then(() => console.log('[info] bullmq worker ready'));
process.on('SIGTERM', () => worker.close().then(() => process.exit(0)));
