/**
 * The local hub inside Node-RED: one per runtime, shared by every config node in local mode,
 * started by the first and stopped shortly after the last lets go (a redeploy re-acquires it).
 */
import * as path from 'node:path';
import { LocalHub, LocalHubOptions, start } from './index';
import type { Tier } from './tiers';

export interface LocalHubSettings {
  mqttsPort?: number;
  amqpsPort?: number;
  httpsPort?: number;
  /** The DPS port (MQTT and HTTPS); 0, the default, picks a free one. */
  dpsPort?: number;
  dataDir?: string;
  /** IoT Hub tier whose C2D throttle applies (tiers.ts); none: unthrottled. */
  tier?: Tier;
  units?: number;
}

let running: { hub: Promise<LocalHub>; users: number; key: string; stopTimer?: NodeJS.Timeout } | undefined;

function keyOf(s: LocalHubSettings): string {
  return JSON.stringify([s.mqttsPort, s.amqpsPort, s.httpsPort, s.dpsPort, s.dataDir, s.tier, s.units]);
}

/** Default ports avoid 443 (needs root) and the standard 8883/5671 a real broker may hold. */
export const LOCAL_DEFAULTS = { mqttsPort: 8883, amqpsPort: 5671, httpsPort: 8443 };

export function acquireLocalHub(settings: LocalHubSettings, userDir: string | undefined): Promise<LocalHub> {
  const key = keyOf(settings);
  if (running && running.key !== key && running.users === 0) {
    // Settings changed while nobody used the hub: restart it with the new ones.
    const old = running;
    running = undefined;
    if (old.stopTimer) clearTimeout(old.stopTimer);
    const next = old.hub
      .then(
        (h) => h.stop(),
        () => undefined,
      )
      .then(() => acquireLocalHub(settings, userDir));
    return next;
  }
  if (!running) {
    const options: LocalHubOptions = {
      dataDir: settings.dataDir || path.join(userDir ?? process.cwd(), 'iothub-local-hub'),
      ports: {
        mqtts: settings.mqttsPort ?? LOCAL_DEFAULTS.mqttsPort,
        amqps: settings.amqpsPort ?? LOCAL_DEFAULTS.amqpsPort,
        amqp: 0,
        https: settings.httpsPort ?? LOCAL_DEFAULTS.httpsPort,
        dps: settings.dpsPort ?? 0,
      },
      autoRegister: true,
      tier: settings.tier,
      units: settings.units,
    };
    const hub = start(options);
    running = { hub, users: 0, key };
    hub.catch(() => {
      if (running?.hub === hub) running = undefined;
    });
  }
  const r = running;
  if (r.stopTimer) {
    clearTimeout(r.stopTimer);
    r.stopTimer = undefined;
  }
  r.users++;
  return r.hub;
}

export function releaseLocalHub(lingerMs = 2000): Promise<void> {
  const r = running;
  if (!r) return Promise.resolve();
  r.users = Math.max(0, r.users - 1);
  if (r.users > 0) return Promise.resolve();
  const stop = async (): Promise<void> => {
    if (running === r) running = undefined;
    try {
      await (await r.hub).stop();
    } catch {
      // A hub that failed to start has nothing to stop.
    }
  };
  if (lingerMs <= 0) return stop();
  r.stopTimer = setTimeout(() => void stop(), lingerMs);
  return Promise.resolve();
}
