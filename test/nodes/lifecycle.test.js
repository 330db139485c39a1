'use strict';
// Redeploys leave nothing behind, and no key or token ever leaves the credentials store.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { helper, nodeModules, startHub, configNode, waitFor, hubDataDir } = require('../support/flows');
const { startNodeRed } = require('../../scripts/node-red-runtime');
const { resources, settledTo, adminRequest: request } = require('../support/runtime');

test(
  '50 redeploys leave no socket, timer or listener behind and never duplicate outputs',
  { timeout: 120_000 },
  async () => {
    const hub = await startHub({ devices: ['d1', 'd2'] });
    await helper.startServer();
    const { node: cfg, credentials } = configNode(hub);
    const at = (n) => ({ x: 1, y: 1, z: 'tab', ...n });
    const flow = [
      { id: 'tab', type: 'tab' },
      cfg,
      at({
        id: 'r1',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'd1',
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      at({
        id: 'r2',
        type: 'iothub-device-receive',
        connection: 'cfg',
        deviceId: 'd2',
        output: 'string',
        settle: 'auto',
        wires: [['out']],
      }),
      at({
        id: 'send',
        type: 'iothub-c2d-send',
        connection: 'cfg',
        deviceId: '',
        deviceIdType: 'str',
        ack: 'full',
        ttl: '',
        trackDelivery: true,
        trackTimeout: 10,
        mappings: [],
        wires: [['tracked']],
      }),
      at({ id: 'fb', type: 'iothub-c2d-feedback', connection: 'cfg', split: true, wires: [[]] }),
      at({ id: 'out', type: 'helper' }),
      at({ id: 'tracked', type: 'helper' }),
    ];
    try {
      // Warm up once so lazily created, process-wide things (TLS contexts, module caches) exist before counting.
      await helper.load(nodeModules, flow, credentials);
      await waitFor(() => hub.isDeviceConnected('d1') && hub.isDeviceConnected('d2'), 'devices connected');
      await helper.unload();
      await waitFor(() => hub.connectedClients() === 0, 'disconnected');
      await new Promise((r) => setTimeout(r, 200));
      const baseline = resources();
      let afterTen;
      const listenersBefore = process.listenerCount('exit') + process.listenerCount('uncaughtException');
      for (let i = 0; i < 50; i++) {
        await helper.load(nodeModules, flow, credentials);
        const out = [];
        helper.getNode('out').on('input', (m) => out.push(m.payload));
        await waitFor(
          () => hub.isDeviceConnected('d1') && hub.isDeviceConnected('d2'),
          `devices connected (deploy ${i})`,
        );
        if (i % 10 === 0) {
          // One message per device after a reconnect: exactly one output each, never two.
          helper.getNode('send').receive({ payload: `p${i}`, deviceId: 'd1' });
          await waitFor(() => out.length === 1, 'one output');
          await new Promise((r) => setTimeout(r, 100));
          assert.deepEqual(out, [`p${i}`], 'no duplicated output');
        }
        await helper.unload();
        if (i === 9) afterTen = resources();
      }
      await waitFor(() => hub.connectedClients() === 0, 'every device connection closed');
      const now = await settledTo(baseline);
      console.log(
        `# handles: baseline ${JSON.stringify(baseline)}, after 10 deploys ${JSON.stringify(afterTen)}, after 50 ${JSON.stringify(now)}`,
      );
      // Sockets are all closed; nothing grows with the number of deploys.
      assert.equal(now.TCPSocketWrap ?? 0, baseline.TCPSocketWrap ?? 0, 'sockets');
      assert.equal(now.TLSWrap ?? 0, baseline.TLSWrap ?? 0, 'TLS sockets');
      assert.deepEqual(now, baseline, 'every handle back to baseline');
      assert.equal(process.listenerCount('exit') + process.listenerCount('uncaughtException'), listenersBefore);
    } finally {
      await helper.unload().catch(() => undefined);
      await helper.stopServer();
      await hub.stop();
    }
  },
);

test(
  'the connection string is in no flows.json, exported flow, credentials answer or trace log line',
  { timeout: 60_000 },
  async () => {
    const hub = await startHub({ devices: ['d1'], dataDir: hubDataDir() });
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-secrets-'));
    const lines = [];
    const red = await startNodeRed({
      userDir,
      credentialSecret: 'test-secret',
      logLevel: 'trace',
      settings: {
        logging: {
          console: { level: 'off' },
          capture: { level: 'trace', metrics: true, audit: true, handler: () => (m) => lines.push(JSON.stringify(m)) },
        },
      },
    });
    try {
      const key = /SharedAccessKey=([^;]+)/.exec(hub.hubConnectionString)[1];
      const { node: cfg } = configNode(hub);
      const flow = [
        { id: 'tab', type: 'tab', label: 'secrets' },
        { ...cfg, credentials: { connectionString: hub.hubConnectionString, ca: hub.caPem } },
        {
          id: 'recv',
          type: 'iothub-device-receive',
          z: 'tab',
          x: 100,
          y: 100,
          connection: 'cfg',
          deviceId: 'd1',
          output: 'auto',
          settle: 'auto',
          wires: [[]],
        },
        {
          id: 'send',
          type: 'iothub-c2d-send',
          z: 'tab',
          x: 100,
          y: 200,
          connection: 'cfg',
          deviceId: 'd1',
          deviceIdType: 'str',
          ack: 'full',
          ttl: '',
          mappings: [],
          trackDelivery: false,
          trackTimeout: 60,
          wires: [],
        },
      ];
      const deployed = await request(red.port, 'POST', '/flows', flow);
      assert.equal(deployed.status, 204, deployed.text);
      await waitFor(() => hub.isDeviceConnected('d1'), 'device connected through the deployed flow', 15_000);
      const exported = await request(red.port, 'GET', '/flows');
      const creds = await request(red.port, 'GET', '/credentials/iothub-connection/cfg');
      assert.match(creds.text, /"has_connectionString":true/);
      const files = fs
        .readdirSync(userDir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => fs.readFileSync(path.join(userDir, f), 'utf8'));
      for (const [what, text] of [
        ['exported flow', exported.text],
        ['credentials answer', creds.text],
        ['files in the user directory', files.join('\n')],
        ['trace log', lines.join('\n')],
      ]) {
        assert.ok(!text.includes(key), `${what} holds the key`);
        assert.ok(!/SharedAccessSignature sr=|sig=[A-Za-z0-9%]/.test(text), `${what} holds a token`);
      }
      assert.ok(lines.length > 10, 'the trace log was captured');

      // The editor's live check: what a pasted string is and allows, never the key.
      const ok = JSON.parse(
        (await request(red.port, 'POST', '/iothub-c2d/validate', { connectionString: hub.hubConnectionString })).text,
      );
      assert.deepEqual(
        { ok: ok.ok, kind: ok.kind, policy: ok.policy, service: ok.service, anyDevice: ok.anyDevice },
        { ok: true, kind: 'service', policy: 'iothubowner', service: true, anyDevice: true },
      );
      const dev = JSON.parse(
        (
          await request(red.port, 'POST', '/iothub-c2d/validate', {
            connectionString: `HostName=h.azure-devices.net;DeviceId=d9;SharedAccessKey=${key}`,
          })
        ).text,
      );
      assert.deepEqual(
        { kind: dev.kind, deviceId: dev.deviceId, service: dev.service },
        { kind: 'device', deviceId: 'd9', service: false },
      );
      const badText = (
        await request(red.port, 'POST', '/iothub-c2d/validate', {
          connectionString: `HostName=h.azure-devices.net;DeviceId=d9;SharedAccessKey=${key};SharedAccessKey=${key}`,
        })
      ).text;
      const bad = JSON.parse(badText);
      assert.equal(bad.ok, false);
      assert.match(bad.message, /SharedAccessKey appears twice/);
      assert.ok(!badText.includes(key) && !JSON.stringify(ok).includes(key), 'the check never echoes the key');
    } finally {
      await red.stop();
      await hub.stop();
      fs.rmSync(userDir, { recursive: true, force: true });
    }
  },
);
