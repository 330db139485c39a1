/** Where a connection dials and how it trusts the far end: shared by the device transports and the service client. */
import type { Proxy } from './proxy';

export interface Endpoint {
  /** HostName from the connection string (SAS scope, MQTT user name); may carry :port. */
  hostName: string;
  /** Where to dial instead (127.0.0.1 for the local hub); the certificate is still checked against HostName. */
  connectHost?: string;
  /** An IoT Edge gateway (GatewayHostName, may carry :port): dialled, and its certificate checked, by this name. */
  gatewayHostName?: string;
  port?: number;
  ca?: string;
  rejectUnauthorized?: boolean;
  tls?: boolean;
  /** A connection silent this long (no answer to MQTT PINGREQ, no AMQP frame) is taken for dead. Default 180 s, as the SDKs. */
  keepAliveSec?: number;
  /**
   * How long one attempt may take from dialling to ready (MQTT CONNACK and SUBACK; AMQP open, token and attach) before it
   * is given up and tried again. Default: the keep-alive, at most 30 s (the SDKs' CONNACK wait).
   */
  connectTimeoutMs?: number;
  /** An HTTP proxy to tunnel through (proxy.ts). */
  proxy?: Proxy;
}

export interface ResolvedEndpoint {
  host: string;
  hostName: string;
  port: number;
  servername: string;
  ca?: string;
  rejectUnauthorized: boolean;
  tls: boolean;
  keepAliveSec: number;
  connectTimeoutMs: number;
  proxy?: Proxy;
}

export function resolveEndpoint(e: Endpoint, defaultPort: number): ResolvedEndpoint {
  const m = /^(.*?)(?::(\d+))?$/.exec(e.hostName) as RegExpExecArray;
  const g = e.gatewayHostName ? (/^(.*?)(?::(\d+))?$/.exec(e.gatewayHostName) as RegExpExecArray) : undefined;
  const bareHost = g ? g[1] : m[1];
  const keepAliveSec = e.keepAliveSec && e.keepAliveSec > 0 ? e.keepAliveSec : 180;
  return {
    host: e.connectHost || bareHost,
    hostName: e.hostName,
    port: e.port || (g ? (g[2] ? Number(g[2]) : defaultPort) : m[2] ? Number(m[2]) : defaultPort),
    servername: bareHost,
    ca: e.ca,
    rejectUnauthorized: e.rejectUnauthorized !== false,
    tls: e.tls !== false,
    keepAliveSec,
    connectTimeoutMs:
      e.connectTimeoutMs && e.connectTimeoutMs > 0 ? e.connectTimeoutMs : Math.min(keepAliveSec, 30) * 1000,
    ...(e.proxy ? { proxy: e.proxy } : {}),
  };
}
