// A Node function as a `switchboard agent --worker CMD` handler process:
//
//   const { worker, Permanent } = require('switchboard-client');
//   worker(async (job) => {            // job: {jobId, type, payload, user, attempt}
//     if (!(job.payload.amount > 0)) throw new Permanent('amount must be > 0'); // no retry
//     return { fee: job.payload.amount * 0.02 };
//   });
//
// One job per stdin line, one answer per job on stdout: {jobId, result} for a resolved value,
// {jobId, error, retry:false} for Permanent, {jobId, error, retry:true} for anything else
// (its stack goes to stderr, which the agent logs with the job id). console.log goes to
// stderr while the loop runs, so a stray log line cannot break the protocol. Jobs are
// answered in order, one at a time. The process ends when stdin closes.
'use strict';
const readline = require('node:readline');

class Permanent extends Error {}

function answer(job, value, err) {
  if (!err) {
    try {
      return JSON.stringify({ jobId: job.jobId, result: value === undefined ? null : value });
    } catch (e) {
      err = new Permanent(`result is not JSON: ${e.message}`);
    }
  }
  if (!(err instanceof Permanent)) process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  return JSON.stringify({ jobId: job.jobId, error: String((err && err.message) || err || 'failed'),
    retry: !(err instanceof Permanent) });
}

// Runs the protocol loop with fn; resolves when stdin closes.
function worker(fn, { input = process.stdin, output = process.stdout } = {}) {
  console.log = (...a) => console.error(...a);
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    chain = chain.then(async () => {
      const job = JSON.parse(line);
      let text;
      try { text = answer(job, await fn(job)); } catch (e) { text = answer(job, undefined, e); }
      await new Promise((r) => output.write(`${text}\n`, r));
    });
  });
  return new Promise((resolve) => rl.on('close', () => chain.then(resolve)));
}

module.exports = { worker, Permanent };
