'use strict';
// What each node makes of its saved properties: the editor's defaults for what is missing, and nothing odd let through.
const test = require('node:test');
const assert = require('node:assert/strict');
const {
  connectionSettings,
  deviceReceiveSettings,
  c2dSendSettings,
  c2dFeedbackSettings,
  port,
} = require('../../nodes/node-settings.js');

test('an empty definition gets the defaults the editor shows', () => {
  assert.deepEqual(connectionSettings({ id: 'c', type: 'iothub-connection' }), {
    mode: 'azure',
    deviceTransport: 'mqtt',
    serviceTransport: 'amqp',
    tokenLifetimeSec: 3600,
    keepAliveSec: 180,
    sendQueueLimit: 10_000,
    sendQueueTimeoutMs: 30_000,
    connectionStringEnv: '',
    ports: { mqtt: undefined, amqp: undefined, ws: undefined },
    proxyMode: 'env',
    proxyUrl: '',
    retry: undefined,
    localHub: { mqttsPort: undefined, amqpsPort: undefined, httpsPort: undefined, dataDir: undefined },
    dps: {
      endpoint: 'global.azure-devices-provisioning.net',
      idScope: '',
      attestation: 'group',
      transport: 'mqtt',
      keyEnv: '',
      localHub: false,
    },
  });
  // The reconnect schedule from the flow JSON: positive numbers only.
  assert.deepEqual(
    connectionSettings({
      id: 'c',
      type: 'iothub-connection',
      retry: { initialDelayMs: 50, maxDelayMs: '200', factor: 3, unauthorizedInitialDelayMs: -1 },
    }).retry,
    { initialDelayMs: 50, maxDelayMs: 200 },
  );
  assert.deepEqual(deviceReceiveSettings({ id: 'r', type: 'iothub-device-receive' }), {
    connection: '',
    deviceId: '',
    deviceIdType: 'str',
    output: 'auto',
    settle: 'auto',
  });
  assert.deepEqual(c2dSendSettings({ id: 's', type: 'iothub-c2d-send' }), {
    connection: '',
    deviceId: '',
    deviceIdType: 'str',
    ack: 'none',
    ttlSec: undefined,
    rows: [],
    trackDelivery: false,
    trackTimeoutMs: 60_000,
  });
  assert.deepEqual(c2dFeedbackSettings({ id: 'f', type: 'iothub-c2d-feedback' }), { connection: '', split: true });
});

test('saved values as the editor writes them (strings for numbers and booleans) and as imports carry them', () => {
  const c = connectionSettings({
    id: 'c',
    type: 'iothub-connection',
    mode: 'local',
    deviceTransport: 'amqp-ws',
    serviceTransport: 'amqp-ws',
    tokenLifetime: '60',
    keepAlive: 30,
    sendQueueLimit: '5',
    sendQueueTimeout: '2',
    connectionStringEnv: ' HUB ',
    mqttPort: '1883',
    amqpPort: 5672,
    wsPort: '',
    localHub: { mqttsPort: '0', dataDir: '/tmp/x' },
  });
  assert.equal(c.mode, 'local');
  assert.equal(c.deviceTransport, 'amqp-ws');
  assert.equal(c.tokenLifetimeSec, 60);
  assert.equal(c.sendQueueTimeoutMs, 2000);
  assert.equal(c.connectionStringEnv, 'HUB');
  assert.deepEqual(c.ports, { mqtt: 1883, amqp: 5672, ws: undefined });
  assert.deepEqual(c.localHub, { mqttsPort: 0, amqpsPort: undefined, httpsPort: undefined, dataDir: '/tmp/x' });
  const s = c2dSendSettings({
    id: 's',
    type: 'iothub-c2d-send',
    ack: 'full',
    ttl: '30',
    trackDelivery: 'true',
    trackTimeout: '5',
    mappings: [{ name: 'a', value: 'b', valueType: 'str' }],
  });
  assert.deepEqual([s.ack, s.ttlSec, s.trackDelivery, s.trackTimeoutMs, s.rows.length], ['full', 30, true, 5000, 1]);
  assert.equal(c2dFeedbackSettings({ id: 'f', type: 'x', split: 'false' }).split, false);
  assert.equal(
    deviceReceiveSettings({ id: 'r', type: 'x', deviceId: '  d1 ', settle: 'manual', output: 'json' }).deviceId,
    'd1',
  );
});

test('values outside what a setting allows fall back to its default rather than reaching a connection', () => {
  const c = connectionSettings({
    id: 'c',
    type: 'x',
    deviceTransport: 'http',
    serviceTransport: 'mqtt',
    tokenLifetime: -5,
    keepAlive: 'soon',
    mqttPort: 70000,
    amqpPort: 1.5,
  });
  assert.deepEqual(
    [c.deviceTransport, c.serviceTransport, c.tokenLifetimeSec, c.keepAliveSec, c.ports.mqtt, c.ports.amqp],
    ['mqtt', 'amqp', 3600, 180, undefined, undefined],
  );
  const s = c2dSendSettings({ id: 's', type: 'x', ack: 'always', ttl: 'never', trackTimeout: 0, mappings: 'rows' });
  assert.deepEqual([s.ack, s.ttlSec, s.trackTimeoutMs, s.rows], ['none', undefined, 60_000, []]);
  assert.equal(deviceReceiveSettings({ id: 'r', type: 'x', output: 'xml', settle: 'later' }).output, 'auto');
  assert.deepEqual(
    [port('8883'), port(' '), port(null), port('0x10'), port(65536)],
    [8883, undefined, undefined, 16, undefined],
  );
});

test('the Device Provisioning Service kind: endpoint, scope, attestation, transport and key variable as saved', () => {
  const c = connectionSettings({
    id: 'c',
    type: 'iothub-connection',
    mode: 'dps',
    dpsEndpoint: ' localhost:8884 ',
    dpsIdScope: ' 0ne0001234 ',
    dpsAttestation: 'individual',
    dpsTransport: 'https',
    dpsKeyEnv: ' IOTC_GROUP_KEY ',
    dpsLocalHub: 'true',
  });
  assert.equal(c.mode, 'dps');
  assert.deepEqual(c.dps, {
    endpoint: 'localhost:8884',
    idScope: '0ne0001234',
    attestation: 'individual',
    transport: 'https',
    keyEnv: 'IOTC_GROUP_KEY',
    localHub: true,
  });
  // Unknown values fall back: a group key over MQTT to the global endpoint.
  const d = connectionSettings({ id: 'c', type: 'x', mode: 'dps', dpsAttestation: 'tpm', dpsTransport: 'amqp' });
  assert.deepEqual(
    [d.dps.attestation, d.dps.transport, d.dps.endpoint],
    ['group', 'mqtt', 'global.azure-devices-provisioning.net'],
  );
});
