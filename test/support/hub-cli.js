'use strict';
// One home for what `iothub-local-hub --json` prints (docs/ARCHITECTURE.md): the arguments that start it on ephemeral
// ports, and the checks of its line, shared by the command-line test and the installed-package test.
const assert = require('node:assert/strict');
const fs = require('node:fs');

/** Every port 0 (ephemeral), the data directory, one device, and whatever else the test adds. */
function cliArgs(dataDir, ...extra) {
  return [
    '--json',
    '--data-dir',
    dataDir,
    ...['--mqtt-port', '--amqps-port', '--amqp-port', '--https-port', '--dps-port'].flatMap((p) => [p, '0']),
    '--device',
    'cli-dev',
    ...extra,
  ];
}

/** The line's keys, its five ports, the hub and device strings (checked without printing them: they hold keys). */
function checkJsonLine(line) {
  let info;
  assert.doesNotThrow(() => {
    info = JSON.parse(line);
  }, 'the first line is JSON');
  assert.deepEqual(Object.keys(info).sort(), [
    'caCertPath',
    'devices',
    'enrollmentGroups',
    'enrollments',
    'hostName',
    'hubConnectionString',
    'idScope',
    'ports',
    'provisioningHost',
  ]);
  assert.deepEqual(Object.keys(info.ports).sort(), ['amqp', 'amqps', 'dps', 'https', 'mqtts']);
  assert.ok(
    Object.values(info.ports).every((p) => Number.isInteger(p) && p > 0),
    'five ports',
  );
  assert.equal(info.hostName, 'localhost');
  assert.match(info.idScope, /^0ne[0-9A-F]{8}$/);
  assert.equal(info.provisioningHost, `localhost:${info.ports.dps}`);
  assert.deepEqual(Object.keys(info.devices), ['cli-dev']);
  assert.ok(
    /^HostName=localhost:\d+;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]+$/.test(
      info.hubConnectionString,
    ),
    'a hub connection string',
  );
  assert.ok(
    /^HostName=localhost:\d+;DeviceId=cli-dev;SharedAccessKey=\S+$/.test(info.devices['cli-dev']),
    'a device connection string',
  );
  assert.ok(fs.existsSync(info.caCertPath), 'the CA file exists');
  return info;
}

module.exports = { cliArgs, checkJsonLine };
