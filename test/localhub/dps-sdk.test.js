'use strict';
// The local hub's Device Provisioning Service judged by the official provisioning SDK, unmodified: the symmetric-key
// security client over the MQTT and the HTTP transports, individual and group enrollments, then a C2D message to the
// assigned device with the official device and service clients. The SDKs trust the hub through NODE_EXTRA_CA_CERTS
// (set by scripts/test.js; hubDataDir copies that CA into each hub).
const test = require('node:test');
const assert = require('node:assert/strict');
const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Mqtt: ProvisioningMqtt, MqttWs: ProvisioningMqttWs } = require('azure-iot-provisioning-device-mqtt');
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
  for (const kind of ['individual', 'group']) {
    test(`${transportName}, ${kind} enrollment: assigned by the provisioning SDK; the device then receives C2D`, async () => {
      const hub = await hubWith();
      try {
        assert.match(hub.idScope, /^0ne[0-9A-F]{8}$/);
        const registrationId = `${kind}-${transportName}`;
        let key;
        if (kind === 'individual') key = (await hub.addEnrollment({ registrationId })).primaryKey;
        else {
          await hub.addEnrollmentGroup({ groupId: 'fleet', primaryKey: GROUP_KEY });
          key = deriveDeviceKey(GROUP_KEY, registrationId);
        }
        const t0 = performance.now();
        const r = await provision(hub, transportName, registrationId, key);
        // The SDK waited the 1 s retry-after between the 202 and its status query (a lower bound: load only adds).
        assert.ok(performance.now() - t0 >= 990, `registered in ${performance.now() - t0} ms`);
        assert.equal(r.registrationId, registrationId);
        assert.equal(r.deviceId, registrationId);
        assert.equal(r.status, 'assigned');
        assert.equal(r.substatus, 'initialAssignment');
        assert.equal(r.assignedHub, `localhost:${hub.ports.mqtts}`);
        for (const f of ['createdDateTimeUtc', 'lastUpdatedDateTimeUtc', 'etag'])
          assert.equal(typeof r[f], 'string', f);
        assert.equal(hub.stats().dpsRegistrations, 1);
        await receivesC2d(hub, r, key);

        // Again: a re-provisioning to the same hub; each accepted request counts.
        const again = await provision(hub, transportName, registrationId, key);
        assert.equal(again.substatus, 'reprovisionedToInitialAssignment');
        assert.equal(again.createdDateTimeUtc, r.createdDateTimeUtc);
        assert.equal(hub.stats().dpsRegistrations, 2);
      } finally {
        await hub.stop();
      }
    });
  }
}

test('the SDK HTTP transport takes no port in the provisioning host: "localhost:PORT" does not resolve', async () => {
  const hub = await hubWith();
  try {
    const e = await hub.addEnrollment({ registrationId: 'with-port' });
    const security = new SymmetricKeySecurityClient('with-port', e.primaryKey);
    const client = ProvisioningDeviceClient.create(hub.provisioningHost, hub.idScope, new ProvisioningHttp(), security);
    const err = await client.register().then(
      () => assert.fail('registered through host:port'),
      (x) => x,
    );
    assert.match(`${err.code} ${err.message}`, /ENOTFOUND|EAI_AGAIN/);
    assert.match(err.message, new RegExp(`localhost:${hub.ports.dps}`));
    assert.equal(hub.stats().dpsRegistrations, 0);
  } finally {
    await hub.stop();
  }
});

test('an enrollment with its own device id; ID scope, enrollments and registrations survive a restart', async () => {
  const dataDir = hubDataDir();
  const first = await hubWith({ dataDir });
  let idScope;
  let key;
  try {
    idScope = first.idScope;
    key = (await first.addEnrollment({ registrationId: 'sensor-7', deviceId: 'Sensor-Seven' })).primaryKey;
    const r = await provision(first, 'mqtt', 'sensor-7', key);
    assert.equal(r.deviceId, 'Sensor-Seven');
    await assert.rejects(first.addEnrollment({ registrationId: 'x', deviceId: 'no spaces' }), /device id "no spaces"/);
    await assert.rejects(first.addEnrollment({ registrationId: 'bad id' }), /registration id "bad id" must be/);
    await assert.rejects(
      first.addEnrollmentGroup({ groupId: 'g', primaryKey: 'short' }),
      /primaryKey must be a base64 key/,
    );
    assert.equal(r.substatus, 'initialAssignment');
  } finally {
    await first.stop();
  }
  const second = await hubWith({ dataDir });
  try {
    assert.equal(second.idScope, idScope);
    assert.equal(second.stats().dpsRegistrations, 0, 'the counter counts since this start');
    const r = await provision(second, 'mqtt', 'sensor-7', key);
    assert.equal(r.substatus, 'reprovisionedToInitialAssignment');
    await receivesC2d(second, r, key);
    assert.equal(second.stats().dpsRegistrations, 1);
  } finally {
    await second.stop();
  }
});

test('port 443: the hub HTTPS port serves DPS REST and MQTT over WebSockets, so the bare host name is the provisioning host', async (t) => {
  let hub;
  try {
    hub = await hubWith({ ports: { mqtts: 0, amqps: 0, amqp: 0, https: 443, dps: 0 } });
  } catch (err) {
    if (process.env.CI) throw err;
    t.skip(`port 443 is not available here (${err.message}); CI runs this`);
    return;
  }
  try {
    for (const [id, Transport] of [
      ['via-443-http', ProvisioningHttp],
      ['via-443-mqtt-ws', ProvisioningMqttWs],
    ]) {
      const e = await hub.addEnrollment({ registrationId: id });
      const security = new SymmetricKeySecurityClient(id, e.primaryKey);
      const client = ProvisioningDeviceClient.create('localhost', hub.idScope, new Transport(), security);
      const r = await client.register();
      assert.equal(r.status, 'assigned');
      assert.equal(r.deviceId, id);
      await receivesC2d(hub, r, e.primaryKey);
    }
    assert.equal(hub.stats().dpsRegistrations, 2);
  } finally {
    await hub.stop();
  }
});

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
        // MQTT: the SDK's translateError keeps the answer as err.result; HTTP: its REST client keeps err.responseBody.
        const body = transportName === 'mqtt' ? err.result : JSON.parse(err.responseBody);
        assert.equal(err.response?.statusCode ?? 401, 401);
        assert.equal(body.errorCode, 401002);
        assert.equal(body.message, 'Unauthorized');
        assert.match(
          body.info.reason,
          id === 'known' ? /not signed with the individual enrollment key/ : /no enrollment/,
        );
        assert.ok(!JSON.stringify(body).includes(e.primaryKey), 'the answer names no key');
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

/** One MQTT client as a device would be, speaking DPS's topics by hand (the `mqtt` package, not the SDK). */
async function rawMqtt(hub, registrationId, token, clientId = registrationId) {
  const mqtt = require('mqtt');
  const client = await mqtt.connectAsync(`mqtts://localhost:${hub.ports.dps}`, {
    clientId,
    username: `${hub.idScope}/registrations/${registrationId}/api-version=2019-03-31`,
    password: token,
    ca: hub.caPem,
    protocolVersion: 4,
    reconnectPeriod: 0,
    clean: true,
  });
  const answers = [];
  client.on('message', (topic, payload) => answers.push({ topic, body: JSON.parse(payload.toString()) }));
  await client.subscribeAsync('$dps/registrations/res/#', { qos: 1 });
  return { client, answers };
}

function rest(hub, method, path, token, body) {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const req = https.request(
      {
        host: 'localhost',
        port: hub.ports.dps,
        method,
        path,
        ca: hub.caPem,
        agent: false,
        headers: {
          'Content-Type': 'application/json; charset=utf-8',
          'Content-Length': Buffer.byteLength(text),
          ...(token ? { Authorization: token } : {}),
        },
      },
      (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(data) }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

test('the wire: MQTT topics with $rid and retry-after, REST paths with a retry-after header, 401 on the response topic', async () => {
  const { createSasToken } = require('../../nodes/core/sas.js');
  const hub = await hubWith();
  const clients = [];
  try {
    const e = await hub.addEnrollment({ registrationId: 'wire-1' });
    const tokenFor = (id, key) =>
      createSasToken({
        resourceUri: `${hub.idScope}/registrations/${id}`,
        key,
        keyName: 'registration',
        expiresAt: Date.now() / 1000 + 600,
      });
    // MQTT: register, then ask for the operation's status.
    const m = await rawMqtt(hub, 'wire-1', tokenFor('wire-1', e.primaryKey));
    clients.push(m.client);
    await m.client.publishAsync(
      '$dps/registrations/PUT/iotdps-register/?$rid=r1',
      JSON.stringify({ registrationId: 'wire-1' }),
      { qos: 1 },
    );
    await waitFor(() => m.answers.length === 1, 'the 202');
    assert.equal(m.answers[0].topic, '$dps/registrations/res/202/?$rid=r1&retry-after=1');
    assert.equal(m.answers[0].body.status, 'assigning');
    assert.match(m.answers[0].body.operationId, /^4\.[0-9a-f]{16}\.[0-9a-f-]{36}$/);
    const op = m.answers[0].body.operationId;
    await m.client.publishAsync(`$dps/registrations/GET/iotdps-get-operationstatus/?$rid=r2&operationId=${op}`, ' ', {
      qos: 1,
    });
    await waitFor(() => m.answers.length === 2, 'the 200');
    assert.equal(m.answers[1].topic, '$dps/registrations/res/200/?$rid=r2');
    assert.equal(m.answers[1].body.operationId, op);
    assert.equal(m.answers[1].body.status, 'assigned');
    assert.equal(m.answers[1].body.registrationState.assignedHub, `localhost:${hub.ports.mqtts}`);

    // A wrong key is accepted at CONNECT and answered 401 on the response topic, as DPS does.
    const bad = await rawMqtt(hub, 'wire-1', tokenFor('wire-1', Buffer.alloc(32, 1).toString('base64')));
    clients.push(bad.client);
    await bad.client.publishAsync(
      '$dps/registrations/PUT/iotdps-register/?$rid=r3',
      JSON.stringify({ registrationId: 'wire-1' }),
      { qos: 1 },
    );
    await waitFor(() => bad.answers.length === 1, 'the 401');
    assert.equal(bad.answers[0].topic, '$dps/registrations/res/401/?$rid=r3');
    assert.equal(bad.answers[0].body.errorCode, 401002);
    assert.equal(bad.answers[0].body.message, 'Unauthorized');
    for (const f of ['trackingId', 'timestampUtc']) assert.equal(typeof bad.answers[0].body[f], 'string');

    // A client id other than the registration id is refused at CONNECT.
    await assert.rejects(
      rawMqtt(hub, 'wire-1', tokenFor('wire-1', e.primaryKey), 'someone-else'),
      /Bad username or password|Connection refused/,
    );

    // REST: the same answers, retry-after as a header.
    const token = tokenFor('wire-1', e.primaryKey);
    const put = await rest(hub, 'PUT', `/${hub.idScope}/registrations/wire-1/register?api-version=2019-03-31`, token, {
      registrationId: 'wire-1',
    });
    assert.equal(put.status, 202);
    assert.equal(put.headers['retry-after'], '1');
    assert.equal(put.body.status, 'assigning');
    const get = await rest(
      hub,
      'GET',
      `/${hub.idScope}/registrations/wire-1/operations/${put.body.operationId}?api-version=2019-03-31`,
      token,
    );
    assert.equal(get.status, 200);
    assert.equal(get.body.status, 'assigned');
    assert.equal(get.body.registrationState.substatus, 'reprovisionedToInitialAssignment');
    const denied = await rest(
      hub,
      'PUT',
      `/${hub.idScope}/registrations/wire-1/register?api-version=2019-03-31`,
      undefined,
      { registrationId: 'wire-1' },
    );
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['x-ms-error-code'], '401002');
    const unknownOp = await rest(
      hub,
      'GET',
      `/${hub.idScope}/registrations/wire-1/operations/4.0.nope?api-version=2019-03-31`,
      token,
    );
    assert.equal(unknownOp.status, 404);
    assert.equal(hub.stats().dpsRegistrations, 2, 'the refused requests do not count');
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await hub.stop();
  }
});

test('bad input: malformed requests get clear answers, hostile bytes close only their own connection', async () => {
  const tls = require('node:tls');
  const { createSasToken } = require('../../nodes/core/sas.js');
  const { isDpsConnect } = require('../../nodes/localhub/dps-mqtt.js');
  const hub = await hubWith();
  const clients = [];
  try {
    const e = await hub.addEnrollment({ registrationId: 'bad-1' });
    const sign = (over = {}) =>
      createSasToken({
        resourceUri: `${hub.idScope}/registrations/bad-1`,
        key: e.primaryKey,
        keyName: 'registration',
        expiresAt: Date.now() / 1000 + 600,
        ...over,
      });
    const path = `/${hub.idScope}/registrations/bad-1/register?api-version=2019-03-31`;
    const reasons = {
      expired: await rest(hub, 'PUT', path, sign({ expiresAt: Date.now() / 1000 - 10 }), { registrationId: 'bad-1' }),
      skn: await rest(hub, 'PUT', path, sign({ keyName: 'iothubowner' }), { registrationId: 'bad-1' }),
      resource: await rest(hub, 'PUT', path, sign({ resourceUri: `${hub.idScope}/registrations/other` }), {
        registrationId: 'bad-1',
      }),
      scope: await rest(hub, 'PUT', `/0neFFFFFFFF/registrations/bad-1/register`, sign(), { registrationId: 'bad-1' }),
      garbage: await rest(hub, 'PUT', path, 'SharedAccessSignature nonsense', { registrationId: 'bad-1' }),
    };
    for (const [what, r] of Object.entries(reasons)) {
      assert.equal(r.status, 401, what);
      assert.equal(r.body.errorCode, 401002, what);
    }
    assert.match(reasons.expired.body.info.reason, /expired/);
    assert.match(reasons.skn.body.info.reason, /skn must be "registration"/);
    assert.match(reasons.resource.body.info.reason, /resource must be \{idScope\}\/registrations\/\{registrationId\}/);
    assert.match(reasons.scope.body.info.reason, /unknown ID scope/);
    const mismatch = await rest(hub, 'PUT', path, sign(), { registrationId: 'someone-else' });
    assert.equal(mismatch.status, 400);
    assert.match(mismatch.body.info.reason, /registrationId differs/);
    const wrongMethod = await rest(hub, 'GET', path, sign());
    assert.equal(wrongMethod.status, 400);
    assert.match(wrongMethod.body.info.reason, /use PUT/);
    const nowhere = await rest(hub, 'GET', '/nothing/here', sign());
    assert.equal(nowhere.status, 404);

    // Bytes that are neither MQTT nor HTTP: that connection ends, the port goes on serving.
    await new Promise((resolve, reject) => {
      const s = tls.connect({ host: 'localhost', port: hub.ports.dps, ca: hub.caPem }, () =>
        s.write('\x00\x01\x02\xff\r\n\r\n'),
      );
      s.on('error', () => undefined);
      s.on('close', resolve);
      s.on('data', () => undefined);
      s.setTimeout(10000, () => reject(new Error('the hostile connection was not closed')));
    });
    // MQTT: a subscription or a publish outside DPS's topics closes that connection.
    const sub = await rawMqtt(hub, 'bad-1', sign());
    clients.push(sub.client);
    await assert.rejects(sub.client.subscribeAsync('#', { qos: 0 }), /Connection closed/);
    const pub = await rawMqtt(hub, 'bad-1', sign());
    clients.push(pub.client);
    const closed = new Promise((resolve) => pub.client.once('close', resolve));
    pub.client.publish('devices/bad-1/messages/events/', 'x', { qos: 1 });
    await closed;
    // The port still registers.
    const ok = await provision(hub, 'mqtt', 'bad-1', e.primaryKey);
    assert.equal(ok.status, 'assigned');

    // The CONNECT reader never throws, and says "not yet" for a cut CONNECT.
    const connect = Buffer.from('101d00044d5154540482003c0003616263000f302f726567697374726174696f6e73', 'hex');
    for (let i = 0; i < connect.length; i++) assert.notEqual(isDpsConnect(connect.subarray(0, i)), true);
    for (let i = 0; i < 2000; i++) {
      const junk = Buffer.from(
        Array.from({ length: 1 + (i % 60) }, (_, k) => (k === 0 && i % 2 ? 0x10 : (i * 31 + k * 17) & 0xff)),
      );
      assert.ok([true, false, undefined].includes(isDpsConnect(junk)));
    }
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await hub.stop();
  }
});
