'use strict';
// Closing a connection before the hub has opened it (a redeploy during the TLS handshake, common on a busy machine):
// nothing may be left behind. rhea once left a 3-minute idle timer per such connection (docs/PROTOCOL.md, pitfalls).
const test = require('node:test');
const assert = require('node:assert/strict');
const { ServiceClient } = require('../../nodes/core/service-client.js');
const { DeviceClient } = require('../../nodes/core/device-client.js');
const { startHub, waitFor } = require('../support/flows');
const { resources: all, settledTo } = require('../support/runtime');

// Timers and sockets: what a connection leaves behind (a closing server's CloseReq comes and goes on its own).
const resources = () => {
  const r = all();
  return { Timeout: r.Timeout ?? 0, TCPSocketWrap: r.TCPSocketWrap ?? 0, TLSWrap: r.TLSWrap ?? 0 };
};

test(
  '30 service and 30 AMQP device connections closed while connecting leave no timer or socket behind',
  { timeout: 60_000 },
  async () => {
    const hub = await startHub({ devices: ['early'] });
    const key = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
    const common = { hostName: 'localhost', connectHost: '127.0.0.1', port: hub.ports.amqps, ca: hub.caPem };
    try {
      const baseline = resources();
      for (let i = 0; i < 30; i++) {
        const s = new ServiceClient({ ...common, sharedAccessKeyName: 'iothubowner', sharedAccessKey: key });
        const d = new DeviceClient({
          ...common,
          deviceId: 'early',
          transport: 'amqp',
          credentials: { sharedAccessKey: key, sharedAccessKeyName: 'iothubowner' },
        });
        s.open();
        d.open();
        // Some close in the same tick, some once the socket is up but before the hub's open is read.
        for (let t = 0; t < i % 4; t++) await new Promise((r) => setImmediate(r));
        await Promise.all([s.close(), d.close()]);
      }
      await waitFor(() => hub.connectedClients() === 0, 'the hub sees every connection gone', 15_000);
      const now = await settledTo(baseline, resources);
      console.log(
        `# 60 connections closed while connecting: handles baseline ${JSON.stringify(baseline)}, after ${JSON.stringify(now)}`,
      );
      assert.deepEqual(now, baseline, 'every timer and socket gone');
    } finally {
      await hub.stop();
    }
  },
);
