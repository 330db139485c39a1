/**
 * The contract between DeviceClient and a device transport (mqtt-device.ts, amqp-device.ts): the client hands a
 * transport its options and a TransportEvents to report to, and gets back a DeviceSession to drive.
 */
import type { Endpoint } from './endpoint';
import type { IotHubError } from './errors';
import type { ReceivedC2DMessage } from './message';
import type { RetryOptions } from './retry';

export type DeviceTransport = 'mqtt' | 'mqtt-ws' | 'amqp' | 'amqp-ws';

/** What a device may be set to: a transport, or `auto` (MQTT, else MQTT-WS) / `amqp-auto` (AMQP, else AMQP-WS). */
export type DeviceTransportChoice = DeviceTransport | 'auto' | 'amqp-auto';

export const DEFAULT_DEVICE_PORTS: Record<DeviceTransportChoice, number> = {
  mqtt: 8883,
  'mqtt-ws': 443,
  amqp: 5671,
  'amqp-ws': 443,
  auto: 8883,
  'amqp-auto': 5671,
};

export type DeviceCredentials =
  | { sharedAccessKey: string; sharedAccessKeyName?: string }
  | { sharedAccessSignature: string }
  | { cert: string; key: string; passphrase?: string };

export interface DeviceClientOptions extends Endpoint {
  deviceId: string;
  transport: DeviceTransportChoice;
  /** auto: the WebSockets port, when the own port (`port`) does not answer. Default 443. */
  wsPort?: number;
  credentials: DeviceCredentials;
  tokenLifetimeSec?: number;
  retry?: RetryOptions;
  settle?: 'auto' | 'manual';
}

export type SettleOutcome = 'complete' | 'reject' | 'abandon';

/** What a transport reports back to the client that drives it. */
export interface TransportEvents {
  connected(): void;
  /** ack: acknowledge as the settle mode says (MQTT PUBACK, AMQP accept when automatic); call it once handed over. */
  message(m: ReceivedC2DMessage, ack: () => void): void;
  /** The connection is gone; err says why (undefined: closed on purpose). */
  closed(err?: IotHubError): void;
  /** A message came that cannot be read (it is acknowledged or dead-lettered, never delivered): what came, as it came. */
  unreadable(err: IotHubError, raw: UnreadableMessage): void;
}

export interface UnreadableMessage {
  /** MQTT: the topic the PUBLISH came on. */
  topic?: string;
  body: unknown;
}

export interface DeviceSession {
  /** The transport in use, when it was chosen at run time (auto): the status names it. */
  readonly transport?: DeviceTransport;
  settle(lockToken: string, outcome: SettleOutcome): Promise<void>;
  /** Closes gracefully; pending acknowledgements are flushed first. */
  end(): Promise<void>;
  /** Puts a new token on the live connection (AMQP's $cbs); absent where the token rides in CONNECT (MQTT). */
  renew?(token: string): Promise<void>;
}
