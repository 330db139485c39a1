/**
 * What each node's saved properties mean: one typed settings object per node, read once from the flow's JSON (which
 * may come from an older version, a hand edit or an import), with the defaults the editor shows. Pure: no Node-RED.
 */
import type { MappingRow } from './core/message-builder';
import { AckMode, ACK_MODES } from './core/message';
import type { PayloadOutput } from './core/payload';
import type { DeviceTransport } from './core/transport';
import type { NodeDef } from './node-red';
import type { LocalHubSettings } from './localhub/shared-hub';
import type { Tier } from './localhub/tiers';

const DEVICE_TRANSPORTS: readonly DeviceTransport[] = ['mqtt', 'mqtt-ws', 'amqp', 'amqp-ws'];
const PAYLOAD_OUTPUTS: readonly PayloadOutput[] = ['auto', 'string', 'buffer', 'json'];

/** A port or other small count: an integer 0-65535 given as a number or a numeric string, else undefined. */
export function port(v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : undefined;
}

const positive = (v: unknown, fallback: number): number => (Number(v) > 0 ? Number(v) : fallback);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const oneOf = <T extends string>(v: unknown, allowed: readonly T[], fallback: T): T =>
  allowed.includes(v as T) ? (v as T) : fallback;
const flag = (v: unknown, fallback: boolean): boolean =>
  v === true || v === 'true' ? true : v === false || v === 'false' ? false : fallback;

export interface ConnectionSettings {
  mode: 'local' | 'azure';
  deviceTransport: DeviceTransport;
  serviceTransport: 'amqp' | 'amqp-ws';
  tokenLifetimeSec: number;
  keepAliveSec: number;
  /** While the hub is unreachable, sends wait in a bounded queue, then fail loudly. */
  sendQueueLimit: number;
  sendQueueTimeoutMs: number;
  /** Names an environment variable holding the connection string, so an exported flow carries no secret. */
  connectionStringEnv: string;
  ports: { mqtt?: number; amqp?: number; ws?: number };
  localHub: LocalHubSettings;
}

export function connectionSettings(def: NodeDef): ConnectionSettings {
  const lh = (def.localHub && typeof def.localHub === 'object' ? def.localHub : {}) as Record<string, unknown>;
  return {
    mode: def.mode === 'local' ? 'local' : 'azure',
    deviceTransport: oneOf(def.deviceTransport, DEVICE_TRANSPORTS, 'mqtt'),
    serviceTransport: def.serviceTransport === 'amqp-ws' ? 'amqp-ws' : 'amqp',
    tokenLifetimeSec: port(def.tokenLifetime) || 3600,
    keepAliveSec: port(def.keepAlive) || 180,
    sendQueueLimit: positive(def.sendQueueLimit, 10_000),
    sendQueueTimeoutMs: positive(def.sendQueueTimeout, 30) * 1000,
    connectionStringEnv: text(def.connectionStringEnv).trim(),
    ports: { mqtt: port(def.mqttPort), amqp: port(def.amqpPort), ws: port(def.wsPort) },
    localHub: {
      mqttsPort: port(lh.mqttsPort),
      amqpsPort: port(lh.amqpsPort),
      httpsPort: port(lh.httpsPort),
      dataDir: typeof lh.dataDir === 'string' && lh.dataDir ? lh.dataDir : undefined,
      // "" or absent: unthrottled; a bad tier or unit count stops the local hub with the error (tiers.ts).
      ...(typeof lh.tier === 'string' && lh.tier ? { tier: lh.tier as Tier, units: positive(lh.units, 1) } : {}),
    },
  };
}

export interface DeviceReceiveSettings {
  connection: string;
  /** One id, several (spaces or new lines between them, or a JSON array), or blank: the device of a device connection string. */
  deviceId: string;
  /** The TypedInput type of deviceId: str, json, env, flow, global. */
  deviceIdType: string;
  output: PayloadOutput;
  settle: 'auto' | 'manual';
}

export function deviceReceiveSettings(def: NodeDef): DeviceReceiveSettings {
  return {
    connection: text(def.connection),
    deviceId: text(def.deviceId).trim(),
    deviceIdType: typeof def.deviceIdType === 'string' ? def.deviceIdType : 'str',
    output: oneOf(def.output, PAYLOAD_OUTPUTS, 'auto'),
    settle: def.settle === 'manual' ? 'manual' : 'auto',
  };
}

export interface C2DSendSettings {
  connection: string;
  deviceId: string;
  /** The TypedInput type of deviceId: str (blank: msg.deviceId), msg, flow, global, env, jsonata. */
  deviceIdType: string;
  ack: AckMode;
  ttlSec?: number;
  rows: MappingRow[];
  trackDelivery: boolean;
  trackTimeoutMs: number;
}

export function c2dSendSettings(def: NodeDef): C2DSendSettings {
  const ttl = Number(def.ttl);
  return {
    connection: text(def.connection),
    deviceId: text(def.deviceId),
    deviceIdType: typeof def.deviceIdType === 'string' ? def.deviceIdType : 'str',
    ack: oneOf(def.ack, ACK_MODES, 'none'),
    ttlSec: Number.isFinite(ttl) && ttl > 0 ? ttl : undefined,
    rows: Array.isArray(def.mappings) ? (def.mappings as MappingRow[]) : [],
    trackDelivery: flag(def.trackDelivery, false),
    trackTimeoutMs: positive(def.trackTimeout, 60) * 1000,
  };
}

export interface C2DFeedbackSettings {
  connection: string;
  /** One msg per record (default) or one msg per feedback message with every record. */
  split: boolean;
}

export function c2dFeedbackSettings(def: NodeDef): C2DFeedbackSettings {
  return { connection: text(def.connection), split: flag(def.split, true) };
}
