#!/usr/bin/env node
/**
 * iothub-local-hub [--host NAME] [--mqtt-port N] [--amqps-port N] [--amqp-port N] [--https-port N]
 *                  [--data-dir DIR] [--device ID]... [--auto-register] [--tier F1|S1|S2|S3 [--units N]] [--json]
 */
import { C2D_SENDS_PER_MINUTE, checkTier } from './tiers';
import * as path from 'node:path';
import { start, LocalHubOptions } from './index';

const USAGE =
  'usage: iothub-local-hub [--host NAME] [--mqtt-port N] [--amqps-port N] [--amqp-port N] [--https-port N] [--data-dir DIR] [--device ID]... [--auto-register] [--tier F1|S1|S2|S3 [--units N]] [--json]';

function parseArgs(argv: string[]): { options: LocalHubOptions; json: boolean } {
  const options: LocalHubOptions = { ports: {}, devices: [], dataDir: path.resolve('.iothub-local-hub') };
  let json = false;
  const port = (v: string | undefined, flag: string): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0 || n > 65535)
      throw new Error(`${flag} needs a port number (0 picks a free one)`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--host':
        options.host = next();
        break;
      case '--mqtt-port':
        options.ports!.mqtts = port(next(), a);
        break;
      case '--amqps-port':
        options.ports!.amqps = port(next(), a);
        break;
      case '--amqp-port':
        options.ports!.amqp = port(next(), a);
        break;
      case '--https-port':
        options.ports!.https = port(next(), a);
        break;
      case '--data-dir':
        options.dataDir = path.resolve(next() ?? '');
        break;
      case '--device': {
        const id = next();
        if (!id) throw new Error('--device needs a device id');
        options.devices!.push(id);
        break;
      }
      case '--auto-register':
        options.autoRegister = true;
        break;
      case '--tier':
        options.tier = next() as LocalHubOptions['tier'];
        break;
      case '--units':
        options.units = Number(next());
        break;
      case '--json':
        json = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  if (options.units !== undefined && !options.tier) throw new Error('--units needs --tier');
  // Checked here so a typo stops the command with the fix, before any port is opened.
  if (options.tier) Object.assign(options, checkTier(options.tier, options.units));
  return { options, json };
}

async function main(): Promise<void> {
  const { options, json } = parseArgs(process.argv.slice(2));
  if (!json) options.log = (level, text) => process.stderr.write(`[${level}] ${text}\n`);
  const hub = await start(options);
  // Handlers first: a signal right after the line is printed must still shut down cleanly.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    hub.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const devices: Record<string, string> = {};
  for (const id of options.devices ?? []) devices[id] = hub.deviceConnectionString(id);
  if (json) {
    process.stdout.write(
      JSON.stringify({
        hostName: hub.hostName,
        hubConnectionString: hub.hubConnectionString,
        devices,
        caCertPath: hub.caCertPath,
        ports: hub.ports,
        ...(options.tier ? { tier: options.tier, units: options.units } : {}),
      }) + '\n',
    );
  } else {
    const lines = [
      `IoT Hub local hub "${hub.hostName}" is running (data in ${hub.dataDir})`,
      `  CA certificate: ${hub.caCertPath}   (official SDKs: NODE_EXTRA_CA_CERTS=${hub.caCertPath})`,
      `  ports: MQTT ${hub.ports.mqtts}, AMQP ${hub.ports.amqps} (plain ${hub.ports.amqp}), HTTPS and WebSockets ${hub.ports.https}`,
      ...(options.tier
        ? [
            `  tier ${options.tier}, ${options.units} unit(s): at most ${C2D_SENDS_PER_MINUTE[options.tier] * (options.units ?? 1)} C2D sends per minute`,
          ]
        : []),
      `  hub (iothubowner): ${hub.hubConnectionString}`,
      ...Object.entries(devices).map(([id, s]) => `  device ${id}: ${s}`),
      'Ctrl-C stops it.',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
}

main().catch((err: Error) => {
  process.stderr.write(`iothub-local-hub: ${err.message}\n`);
  process.exit(2);
});
