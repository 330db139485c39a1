/** What the local hub's endpoints share: the registry, the queues and the one-connection-per-device rule. */
import type { C2DThrottle } from './tiers';
import { C2DQueues } from './c2d-queues';
import { FeedbackQueue } from './feedback-queue';
import { Registry } from './registry';

export type LogFn = (level: 'info' | 'warn' | 'error' | 'debug', text: string) => void;

export interface HubContext {
  hostName: string;
  hubName: string;
  registry: Registry;
  queues: C2DQueues;
  feedback: FeedbackQueue;
  log: LogFn;
  /** Registers the live connection of a device; the previous one is closed (IoT Hub allows one). */
  claimDevice(deviceId: string, kick: () => void): () => void;
  isDeviceConnected(deviceId: string): boolean;
  /** The tier's C2D send throttle (tiers.ts); none: unthrottled. */
  c2dThrottle?: C2DThrottle;
}

export function deviceSessions(): Pick<HubContext, 'claimDevice' | 'isDeviceConnected'> & {
  count(): number;
  kickAll(): void;
} {
  const live = new Map<string, () => void>();
  return {
    claimDevice(deviceId, kick) {
      const old = live.get(deviceId);
      live.set(deviceId, kick);
      if (old && old !== kick) old();
      return () => {
        if (live.get(deviceId) === kick) live.delete(deviceId);
      };
    },
    isDeviceConnected: (deviceId) => live.has(deviceId),
    count: () => live.size,
    kickAll() {
      for (const k of [...live.values()]) k();
      live.clear();
    },
  };
}
