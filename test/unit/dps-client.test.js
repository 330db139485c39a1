'use strict';
// The DPS client's pure parts: a group's device key derived as the SDKs derive it, the registration token the official
// symmetric-key security client makes, the MQTT response topic, DPS refusals as causes, and the assignment file.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { hmacHash } = require('azure-iot-common/dist/authorization');
const {
  deriveDeviceKey,
  registrationToken,
  checkRegistrationId,
  dpsError,
  parseDpsEndpoint,
} = require('../../nodes/core/dps-client.js');
const { parseResponseTopic } = require('../../nodes/core/dps-mqtt.js');
const { FileAssignmentStore } = require('../../nodes/core/dps-assignments.js');
const { parseSasToken } = require('../../nodes/core/sas.js');

const GROUP_KEY = Buffer.alloc(32, 7).toString('base64');

test("a device's key from its group key: the official SDK's HMAC, and openssl's (a fixed vector)", () => {
  // azure-iot-common's hmacHash is what the official clients sign with (base64-decoded key, HMAC-SHA256, base64);
  // the SDK samples and IoT Central derive a group device's key with exactly it over the registration id.
  for (const id of ['device-001', 'thermostat:7', 'A.b_c-d', 'ü-not-ascii']) {
    assert.equal(deriveDeviceKey(GROUP_KEY, id), hmacHash(GROUP_KEY, id), id);
  }
  // echo -n device-001 | openssl dgst -sha256 -mac HMAC -macopt hexkey:0707…07 (32 bytes) -binary | base64
  assert.equal(deriveDeviceKey(GROUP_KEY, 'device-001'), 'iXkrf3VEtjmL4wNdsI7eWvN5gI336mG2RWsGwLssb5I=');
  assert.notEqual(deriveDeviceKey(GROUP_KEY, 'device-001'), deriveDeviceKey(GROUP_KEY, 'device-002'));
});

test('the registration token is the one azure-iot-security-symmetric-key makes, byte for byte', async () => {
  const key = deriveDeviceKey(GROUP_KEY, 'device-001');
  const official = await new SymmetricKeySecurityClient('device-001', key).createSharedAccessSignature('0ne00ABCDEF');
  const text = typeof official === 'string' ? official : official.toString();
  const { se } = parseSasToken(text);
  assert.equal(registrationToken('0ne00ABCDEF', 'device-001', key, se), text);
  const t = parseSasToken(text);
  assert.equal(t.resource, '0ne00ABCDEF/registrations/device-001');
  assert.equal(t.skn, 'registration');
});

test('registration ids, endpoints and response topics', () => {
  for (const ok of ['a', 'device-001', 'A.b_c:d-', 'x'.repeat(128)]) assert.equal(checkRegistrationId(ok), ok);
  for (const bad of ['', 'a b', 'a/b', 'a.', 'x'.repeat(129), 'é'])
    assert.throws(
      () => checkRegistrationId(bad),
      (e) => e.field === 'deviceId' && /registration id/.test(e.message),
    );
  assert.deepEqual(parseDpsEndpoint({ endpoint: 'global.azure-devices-provisioning.net' }, 'mqtt'), {
    host: 'global.azure-devices-provisioning.net',
    port: 8883,
    servername: 'global.azure-devices-provisioning.net',
    ca: undefined,
    rejectUnauthorized: true,
  });
  assert.equal(parseDpsEndpoint({ endpoint: 'global.azure-devices-provisioning.net' }, 'https').port, 443);
  const local = parseDpsEndpoint({ endpoint: 'localhost:40123', connectHost: '127.0.0.1' }, 'https');
  assert.deepEqual([local.host, local.port, local.servername], ['127.0.0.1', 40123, 'localhost']);
  assert.throws(
    () => parseDpsEndpoint({ endpoint: 'https://x/y' }, 'mqtt'),
    (e) => e.field === 'dpsEndpoint',
  );
  assert.deepEqual(parseResponseTopic('$dps/registrations/res/202/?$rid=abc&retry-after=3'), {
    status: 202,
    rid: 'abc',
    retryAfterSec: 3,
  });
  assert.deepEqual(parseResponseTopic('$dps/registrations/res/200/?$rid=x'), {
    status: 200,
    rid: 'x',
    retryAfterSec: undefined,
  });
  assert.equal(parseResponseTopic('devices/x/messages/devicebound/a=b'), undefined);
});

test('DPS refusals become causes a user can act on, with no key or signature in them', () => {
  const body = { errorCode: 401002, message: 'Unauthorized SharedAccessSignature sr=x&sig=abc%3D&se=1' };
  const e401 = dpsError(401, body, 'device-001');
  assert.equal(e401.code, 'UNAUTHORIZED');
  assert.match(e401.message, /enrollment \(group\) key/);
  assert.doesNotMatch(e401.message, /sig=abc/);
  assert.equal(dpsError(400, {}, 'd').field, 'dpsIdScope');
  assert.equal(dpsError(404, {}, 'd').code, 'DEVICE_NOT_FOUND');
  assert.equal(dpsError(403, {}, 'd').code, 'QUOTA_EXCEEDED');
  assert.equal(dpsError(418, 'not json', 'd').code, 'PROTOCOL_ERROR');
});

test('the assignment file: per (ID scope, registration id), no key, survives a new store, bad files cost a registration only', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dps-store-'));
  const file = path.join(dir, 'iothub-dps-assignments.json');
  const problems = [];
  // Written at once here (delay 0); the nodes' store writes 100 ms after the first change.
  const a = new FileAssignmentStore(file, (t) => problems.push(t), 0);
  assert.equal(a.get('0ne1', 'd1'), undefined);
  a.set('0ne1', 'd1', { assignedHub: 'hub-a.azure-devices.net', deviceId: 'd1', key: 'c2VjcmV0' });
  a.set('0ne2', 'd1', { assignedHub: 'hub-b.azure-devices.net', deviceId: 'd1' });
  const b = new FileAssignmentStore(file, undefined, 0);
  assert.deepEqual(b.get('0ne1', 'd1'), { assignedHub: 'hub-a.azure-devices.net', deviceId: 'd1' });
  assert.deepEqual(b.get('0ne2', 'd1'), { assignedHub: 'hub-b.azure-devices.net', deviceId: 'd1' });
  assert.doesNotMatch(fs.readFileSync(file, 'utf8'), /c2VjcmV0|key/i, 'nothing but hub and device id is written');
  b.delete('0ne1', 'd1');
  assert.equal(a.get('0ne1', 'd1'), undefined);
  fs.writeFileSync(file, '{not json');
  assert.equal(a.get('0ne2', 'd1'), undefined);
  a.set('0ne3', 'd3', { assignedHub: 'h', deviceId: 'd3' });
  assert.deepEqual(new FileAssignmentStore(file).get('0ne3', 'd3'), { assignedHub: 'h', deviceId: 'd3' });
  assert.equal(problems.length, 1);
  assert.match(problems[0], /not JSON/);
  // One store per file in a process; a fleet's registrations are written together, on flush at the latest.
  const shared = FileAssignmentStore.for(file);
  assert.equal(FileAssignmentStore.for(path.join(dir, '.', 'iothub-dps-assignments.json')), shared);
  for (let i = 0; i < 50; i++) shared.set('0ne4', `f${i}`, { assignedHub: 'h', deviceId: `f${i}` });
  assert.equal(new FileAssignmentStore(file).get('0ne4', 'f49'), undefined, 'not yet written');
  shared.flush();
  assert.deepEqual(new FileAssignmentStore(file).get('0ne4', 'f49'), { assignedHub: 'h', deviceId: 'f49' });
  // Another writer's change is read again.
  new FileAssignmentStore(file, undefined, 0).set('0ne5', 'x', { assignedHub: 'h2', deviceId: 'x' });
  assert.deepEqual(shared.get('0ne5', 'x'), { assignedHub: 'h2', deviceId: 'x' });
  fs.rmSync(dir, { recursive: true, force: true });
});
