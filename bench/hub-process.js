'use strict';
// The local hub in its own process for the benchmarks: deep queues, feedback batching at its fastest.
// The soak (bench/soak.js) restarts it on the same ports and data directory, so what it queued survives:
// HUB_DATA_DIR, HUB_PORTS (JSON, as the first start printed them), HUB_QUEUE_DEPTH, HUB_FEEDBACK_BATCH_MS;
// HUB_LOG=file appends the hub's log lines to that file.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start } = require('../nodes/localhub/index.js');

(async () => {
  const logFile = process.env.HUB_LOG;
  const hub = await start({
    dataDir: process.env.HUB_DATA_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-bench-')),
    ports: process.env.HUB_PORTS ? JSON.parse(process.env.HUB_PORTS) : { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    queueDepth: Number(process.env.HUB_QUEUE_DEPTH || 20_000),
    feedbackBatchMs: Number(process.env.HUB_FEEDBACK_BATCH_MS || 1),
    autoRegister: true,
    mqttInflight: Number(process.env.BENCH_INFLIGHT || 100),
    ...(logFile
      ? { log: (level, text) => fs.appendFileSync(logFile, `${new Date().toISOString()} ${level} ${text}\n`) }
      : {}),
  });
  process.stdout.write(
    JSON.stringify({
      hubConnectionString: hub.hubConnectionString,
      caCertPath: hub.caCertPath,
      caPem: hub.caPem,
      ports: hub.ports,
      pid: process.pid,
    }) + '\n',
  );
  process.on('SIGTERM', () => hub.stop().then(() => process.exit(0)));
  process.stdin.on('end', () => hub.stop().then(() => process.exit(0)));
  process.stdin.resume();
})().catch((err) => {
  process.stderr.write(`the hub cannot start: ${err.message}\n`);
  process.exit(1);
});
