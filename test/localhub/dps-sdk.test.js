'use strict';
// The local hub's Device Provisioning Service judged by the official provisioning SDK, unmodified: the symmetric-key
// security client over the MQTT and the HTTP transports, individual and group enrollments, then a C2D message to the
// assigned device with the official device and service clients. The SDKs trust the hub through NODE_EXTRA_CA_CERTS
// (set by scripts/test.js; hubDataDir copies that CA into each hub).
const test = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvisioningMqtt } = require('azure-iot-provisioning-device-mqtt');
const { Http: ProvisioningHttp } = require('azure-iot-provisioning-device-http');
const { Http: HttpBase } = require('azure-iot-http-base');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { Client: DeviceClient } = require('azure-iot-device');
const { Mqtt } = require('azure-iot-device-mqtt');
const { Client: ServiceClient } = require('azure-iothub');
const { Message } = require('azure-iot-common');
const { start } = require('../../nodes/localhub/index.js');
const { deriveDeviceKey } = require('../../nodes/core/dps-key.js');
const { hubDataDir, waitFor } = require('../support/flows');

const GROUP_KEY = Buffer.alloc(32, 7).toString('base64');

async function hubWith(options = {}) {
  return start({
    dataDir: hubDataDir(),
    ports: { mqtts: 0, amqps: 0, amqp: 0, https: 0, dps: 0 },
    feedbackBatchMs: 20,
    ...options,
  });
}

/**
 * The SDK's HTTP transport hands `provisioningHost` to https.request as the host, so a `host:port` does not resolve and
 * it always dials 443. Outside the 443 test, an agent (an option of azure-iot-http-base, the SDK's own HTTP layer)
 * carries its connections to the hub's DPS port instead: the SDK's requests and its reading of the answers are unchanged.
 */
function httpTransportTo(port) {
  class ToDpsPort extends https.Agent {
    createConnection(options, cb) {
      return super.createConnection({ ...options, port }, cb);
    }
  }
  const agent = new ToDpsPort({ keepAlive: false });
  const base = new HttpBase();
  base.setOptions({ http: { agent } });
  return { transport: new ProvisioningHttp(base), agent };
}

async function provision(hub, transportName, registrationId, key) {
  const security = new SymmetricKeySecurityClient(registrationId, key);
  if (transportName === 'mqtt') {
    const client = ProvisioningDeviceClient.create(hub.provisioningHost, hub.idScope, new ProvisioningMqtt(), security);
    return client.register();
  }
  const { transport, agent } = httpTransportTo(hub.ports.dps);
  try {
    const client = ProvisioningDeviceClient.create('localhost', hub.idScope, transport, security);
    return await client.register();
  } finally {
    agent.destroy();
  }
}

/** The assigned device connects with the official MQTT device client and receives one C2D message from azure-iothub. */
async function receivesC2d(hub, result, key) {
  const str = `HostName=${result.assignedHub};DeviceId=${result.deviceId};SharedAccessKey=${key}`;
  const dev = DeviceClient.fromConnectionString(str, Mqtt);
  dev.setOptions({ ca: hub.caPem });
  dev.on('error', () => undefined);
  const got = [];
  dev.on('message', (m) => {
    got.push(m);
    dev.complete(m, () => undefined);
  });
  const svc = ServiceClient.fromConnectionString(hub.hubConnectionString);
  try {
    await dev.open();
    await svc.open();
    const m = new Message(`hello ${result.deviceId}`);
    m.messageId = `dps-${result.deviceId}`;
    await svc.send(result.deviceId, m);
    await waitFor(() => got.length === 1, `${result.deviceId} receives its C2D message`);
    assert.equal(got[0].messageId, `dps-${result.deviceId}`);
    assert.equal(got[0].data.toString(), `hello ${result.deviceId}`);
  } finally {
    await svc.close();
    await dev.close();
  }
}

for (const transportName of ['mqtt', 'http']) {
  test(`${transportName}: individual and group enrollments are assigned; the devices then receive C2D`, async () => {
    const hub = await hubWith();
    try {
      assert.match(hub.idScope, /^0ne[0-9A-F]{8}$/);
      const individual = await hub.addEnrollment({ registrationId: `ind-${transportName}` });
      await hub.addEnrollmentGroup({ groupId: 'fleet', primaryKey: GROUP_KEY });

      const r1 = await provision(hub, transportName, individual.registrationId, individual.primaryKey);
      assert.equal(r1.registrationId, `ind-${transportName}`);
      assert.equal(r1.deviceId, `ind-${transportName}`);
      assert.equal(r1.status, 'assigned');
      assert.equal(r1.substatus, 'initialAssignment');
      assert.equal(r1.assignedHub, `localhost:${hub.ports.mqtts}`);
      for (const f of ['createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'etag']) assert.equal(typeof r1[f], 'string', f);
      await receivesC2d(hub, r1, individual.primaryKey);

      const groupDevice = `member-${transportName}`;
      const derived = deriveDeviceKey(GROUP_KEY, groupDevice);
      const r2 = await provision(hub, transportName, groupDevice, derived);
      assert.equal(r2.deviceId, groupDevice);
      assert.equal(r2.status, 'assigned');
      await receivesC2d(hub, r2, derived);
      assert.equal(hub.stats().dpsRegistrations, 2);

      // Again: the same hub, now a re-provisioning; the counter counts each accepted request.
      const r3 = await provision(hub, transportName, groupDevice, derived);
      assert.equal(r3.substatus, 'reprovisionedToInitialAssignment');
      assert.equal(hub.stats().dpsRegistrations, 3);
    } finally {
      await hub.stop();
    }
  });
}

test('refusals, as the SDK reports them: wrong key and unknown id are 401 Unauthorized (401002); disabled is status disabled', async () => {
  const hub = await hubWith();
  try {
    const e = await hub.addEnrollment({ registrationId: 'known' });
    await hub.addEnrollment({ registrationId: 'off', provisioningStatus: 'disabled' });
    const off = await hub.addEnrollment({ registrationId: 'off' });
    assert.equal(off.provisioningStatus, 'disabled');
    await hub.addEnrollmentGroup({ groupId: 'off-group', primaryKey: GROUP_KEY, provisioningStatus: 'disabled' });
    const wrongKey = Buffer.alloc(32, 9).toString('base64');
    for (const transportName of ['mqtt', 'http']) {
      for (const [id, key] of [
        ['known', wrongKey],
        ['nobody', wrongKey],
      ]) {
        const err = await provision(hub, transportName, id, key).then(
          () => assert.fail(`${transportName} ${id} was registered`),
          (x) => x,
        );
        assert.equal(err.name, 'UnauthorizedError', `${transportName} ${id}: ${err.message}`);
        assert.equal(err.result.errorCode, 401002);
        assert.equal(err.result.message, 'Unauthorized');
        assert.ok(!JSON.stringify(err.result).includes(e.primaryKey), 'the answer names no key');
      }
      for (const [id, key] of [
        ['off', off.primaryKey],
        ['off-member', deriveDeviceKey(GROUP_KEY, 'off-member')],
      ]) {
        const err = await provision(hub, transportName, id, key).then(
          () => assert.fail(`${transportName} ${id} was registered`),
          (x) => x,
        );
        // The SDK's polling state machine knows no `disabled` and reports "status is disabled" with the answer.
        assert.equal(err.message, 'status is disabled', `${transportName} ${id}`);
        assert.equal(err.result.status, 'disabled');
        assert.equal(err.result.registrationState.status, 'disabled');
        assert.equal(err.result.registrationState.registrationId, id);
      }
    }
    assert.equal(hub.stats().dpsRegistrations, 4, 'only the disabled ones were accepted as requests');
    assert.equal(hub.inspectQueue('off').length, 0);
    assert.throws(() => hub.deviceConnectionString('off'), /not registered/);
    assert.throws(() => hub.deviceConnectionString('nobody'), /not registered/);
  } finally {
    await hub.stop();
  }
});
