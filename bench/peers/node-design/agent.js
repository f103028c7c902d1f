// The seeds' Node agent (seed 000, "Example 2"): a loop that BRPOPs a job id from
// agent:rebalance:jobs, GETs the record, PUBLISHes `processing`, computes the rebalance
// (2 % fee, no sleep: the benchmark measures the system, not the work) and PUBLISHes `done`
// with the result on agent:rebalance:status. LOOPS such loops run in this process, each on
// its own ioredis connection (BRPOP blocks its connection), like LOOPS agent processes would.
// Env: REDIS_URL, LOOPS (default 1).
'use strict';
const Redis = require('ioredis');

const LOOPS = Number(process.env.LOOPS || 1);
const CHANNEL = 'agent:rebalance:status';
let running = true;

function executeRebalance(payload) {
  if (!payload.amount || payload.amount <= 0) throw new Error('Invalid amount');
  const fee = payload.amount * 0.02;
  return { success: true, originalAmount: payload.amount, fee, remainingAmount: payload.amount - fee,
    processedAt: new Date().toISOString() };
}

async function loop(redis) {
  while (running) {
    let jobId;
    try {
      const popped = await redis.brpop('agent:rebalance:jobs', 10);
      if (!popped) continue;
      jobId = popped[1];
      const jobData = await redis.get(`agent:rebalance:job:${jobId}`);
      if (!jobData) throw new Error(`Job metadata not found: ${jobId}`);
      const job = JSON.parse(jobData);
      const userId = job.user.publicKey;
      await redis.publish(CHANNEL, JSON.stringify({ jobId, status: 'processing', userId,
        timestamp: new Date().toISOString() }));
      const result = executeRebalance(job.payload);
      await redis.publish(CHANNEL, JSON.stringify({ jobId, status: 'done', userId, result,
        timestamp: new Date().toISOString() }));
    } catch (err) {
      if (!running) break;
      console.error(`Agent error: ${err.message}`);
      if (jobId) {
        await redis.publish(CHANNEL, JSON.stringify({ jobId, status: 'error', error: err.message,
          timestamp: new Date().toISOString() })).catch(() => {});
      }
    }
  }
}

const conns = Array.from({ length: LOOPS }, () => new Redis(process.env.REDIS_URL));
Promise.all(conns.map(loop)).then(() => process.exit(0));
process.on('SIGTERM', () => { running = false; conns.forEach((c) => c.disconnect()); });
