'use strict';
// The local hub in its own process for the benchmarks: deep queues, feedback batching at its fastest.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start } = require('../nodes/localhub/index.js');

(async () => {
  const hub = await start({
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-bench-')),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0 },
    queueDepth: 20_000, feedbackBatchMs: 1, autoRegister: true, mqttInflight: Number(process.env.BENCH_INFLIGHT || 100),
  });
  process.stdout.write(JSON.stringify({ hubConnectionString: hub.hubConnectionString, caCertPath: hub.caCertPath, caPem: hub.caPem, ports: hub.ports, pid: process.pid }) + '\n');
  process.on('SIGTERM', () => hub.stop().then(() => process.exit(0)));
  process.stdin.on('end', () => hub.stop().then(() => process.exit(0)));
  process.stdin.resume();
})();
