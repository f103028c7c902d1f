// Seed 001/002's producer in Node: queue a rebalance job and follow it to its end.
//   NODE_PATH=tests/e2e/node_modules REDIS_URL=… node examples/node/producer.js 1000
'use strict';
const { Client } = require('../../clients/node'); // require('switchboard-client') once installed

(async () => {
  const client = new Client();
  const jobId = await client.enqueue('rebalance',
    { amount: Number(process.argv[2] || 1000), priority: 'high' },
    'GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq');
  console.error(`queued ${jobId}`);
  const record = await client.wait(jobId, { timeoutMs: 300000 });
  console.log(JSON.stringify(record));
  client.close();
  process.exitCode = record.status === 'done' ? 0 : 1;
})();
