// Seed 000's RebalanceAgent as a --worker handler in Node: the queue, retries, status
// messages and recovery are Switchboard's agent's; this process only computes.
//   switchboard agent --worker 'exec node examples/node/worker.js'
'use strict';
const { worker, Permanent } = require('../../clients/node/lib/worker'); // no Redis needed here

worker(async (job) => {
  const { amount } = job.payload || {};
  if (!amount || amount <= 0) throw new Permanent('Invalid amount'); // no retry
  const fee = amount * 0.02;
  return { success: true, originalAmount: amount, fee, remainingAmount: amount - fee,
    processedAt: new Date().toISOString() };
});
