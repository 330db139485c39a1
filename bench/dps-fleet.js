'use strict';
// `node bench/dps-fleet.js [devices] [registrations at once]` (after `npm run build`): N devices of one enrollment group
// provisioned through one DpsSession against an in-process local hub (DPS over MQTT, retry-after 1 s), until every one
// is connected to its assigned hub. Prints one JSON line: devices, concurrency, ms, the hub's DPS registrations.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start } = require('../nodes/localhub/index.js');
const { DpsSession } = require('../nodes/core/dps-session.js');
const { MemoryAssignmentStore } = require('../nodes/core/dps-assignments.js');

(async () => {
  const n = Number(process.argv[2] || 1000);
  const concurrency = Number(process.argv[3] || 10);
  const groupKey = Buffer.alloc(32, 7).toString('base64');
  const hub = await start({
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'dps-bench-')),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0, dps: 0 },
    enrollmentGroups: [{ groupId: 'bench', primaryKey: groupKey }],
  });
  const session = new DpsSession({
    dps: {
      endpoint: hub.provisioningHost,
      connectHost: '127.0.0.1',
      idScope: hub.idScope,
      transport: 'mqtt',
      ca: hub.caPem,
    },
    attestation: 'group',
    enrollmentKey: groupKey,
    store: new MemoryAssignmentStore(),
    registrationConcurrency: concurrency,
    hub: { deviceTransport: 'mqtt', serviceTransport: 'amqp', ca: hub.caPem },
  });
  const started = Date.now();
  let connected = 0;
  for (let i = 0; i < n; i++) {
    let seen = false;
    session.acquireDevice(`bench-${i}`, {
      onStatus: (ev) => {
        if (ev.state === 'connected' && !seen) {
          seen = true;
          connected++;
        }
      },
      onMessage: () => undefined,
    });
  }
  while (connected < n) await new Promise((r) => setTimeout(r, 100));
  const ms = Date.now() - started;
  console.log(JSON.stringify({ devices: n, concurrency, ms, registrations: hub.stats().dpsRegistrations }));
  await session.close();
  await hub.stop();
})();
