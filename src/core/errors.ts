/**
 * Typed errors with a stable `code` and a message a Node-RED user can act on.
 * Never put a key, token or connection string in a message.
 */

export type IotHubErrorCode =
  | 'UNAUTHORIZED'
  | 'DEVICE_NOT_FOUND'
  | 'QUEUE_FULL'
  | 'MESSAGE_TOO_LARGE'
  | 'QUOTA_EXCEEDED'
  | 'THROTTLED'
  | 'HUB_SUSPENDED'
  | 'TIMEOUT'
  | 'LOCK_LOST'
  | 'INVALID_ARGUMENT'
  | 'PRECONDITION_FAILED'
  | 'DETACHED'
  | 'NOT_CONNECTED'
  | 'CONNECTION_LOST'
  | 'INVALID_CONNECTION_STRING'
  | 'INVALID_MESSAGE'
  | 'INVALID_TOKEN'
  | 'PROTOCOL_ERROR'
  | 'INTERNAL';

export interface IotHubErrorOptions {
  retryable?: boolean;
  amqpCondition?: string;
  field?: string;
  cause?: unknown;
  /** The cause in a few words, for a node's status: "cannot resolve HOST", "refused", "proxy down". */
  reason?: string;
}

const RETRYABLE: ReadonlySet<IotHubErrorCode> = new Set([
  'THROTTLED',
  'TIMEOUT',
  'NOT_CONNECTED',
  'CONNECTION_LOST',
  'INTERNAL',
  'DETACHED',
]);

export class IotHubError extends Error {
  readonly code: IotHubErrorCode;
  readonly retryable: boolean;
  readonly amqpCondition?: string;
  /** The setting or msg field at fault, when there is one. */
  readonly field?: string;
  /** The cause in a few words for a status; the message says it in full, with the fix. */
  readonly reason?: string;

  constructor(code: IotHubErrorCode, message: string, opts: IotHubErrorOptions = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'IotHubError';
    this.code = code;
    this.retryable = opts.retryable ?? RETRYABLE.has(code);
    if (opts.amqpCondition !== undefined) this.amqpCondition = opts.amqpCondition;
    if (opts.field !== undefined) this.field = opts.field;
    if (opts.reason !== undefined) this.reason = opts.reason;
  }
}

/** A failure's cause in a few words for a status: its own reason, else one for the codes that need no detail. */
export function reasonOf(err: unknown): string | undefined {
  if (!(err instanceof IotHubError)) return undefined;
  if (err.reason) return err.reason;
  if (err.code === 'UNAUTHORIZED') return 'unauthorized';
  if (err.code === 'TIMEOUT') return 'timed out';
  return undefined;
}

/** An attempt that did not complete in time (no TCP answer, no CONNACK, no AMQP open): often a firewall that drops. */
export function connectTimedOut(where: string, ms: number): IotHubError {
  return new IotHubError(
    'TIMEOUT',
    `${where} did not complete the connection in ${Math.round(ms / 1000)} s: a firewall may drop the traffic; try WebSockets (443), auto, or a proxy`,
    { reason: 'timed out' },
  );
}

/** TLS verification failures (Node's and OpenSSL's codes): the far end's certificate is not one we trust. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** What a socket error (Node's, or one of proxy.ts's) carries that says why: its code, host, port, proxy status. */
interface SocketErrorLike {
  code?: unknown;
  hostname?: unknown;
  address?: unknown;
  port?: unknown;
  statusCode?: unknown;
  proxy?: unknown;
  message?: unknown;
  /** ws hands rhea an ErrorEvent whose error is the socket's. */
  error?: unknown;
}

/**
 * A failed dial as a typed error that names its cause (`reason`, for the status) and its fix (the message, for the log):
 * a host that does not resolve, a port that refuses or does not answer, a certificate not trusted, a proxy that refuses
 * or is down. `target` is where we dialled, for the errors that do not say. Undefined when the error says nothing known.
 */
export function fromSocketError(e: unknown, target?: { host: string; port: number }): IotHubError | undefined {
  let err = e as SocketErrorLike | undefined;
  if (err && typeof err.code !== 'string' && err.error && typeof err.error === 'object')
    err = err.error as SocketErrorLike;
  if (!err || typeof err.code !== 'string') return undefined;
  const code = err.code;
  const host = typeof err.hostname === 'string' ? err.hostname : (target?.host ?? 'the host');
  const where = target
    ? `${target.host}:${target.port}`
    : typeof err.address === 'string'
      ? `${err.address}:${String(err.port)}`
      : 'the hub';
  const proxy = typeof err.proxy === 'string' ? err.proxy : 'the proxy';
  const make = (reason: string, text: string) =>
    new IotHubError('CONNECTION_LOST', text, { reason, cause: e, retryable: true });
  switch (code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return make(
        `cannot resolve ${host}`,
        `cannot resolve ${host} (${code}): check the HostName in the connection string (a typo, a deleted hub) and that this machine's DNS works`,
      );
    case 'ECONNREFUSED':
      return make(
        'refused',
        `${where} refused the connection: check the port, and that the hub (or gateway) is running; a firewall may block 8883 and 5671: try WebSockets (443) or auto`,
      );
    case 'ETIMEDOUT':
    case 'ESOCKETTIMEDOUT':
      return make(
        'timed out',
        `${where} did not answer: a firewall may drop the traffic; try WebSockets (443), auto, or a proxy`,
      );
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return make('network unreachable', `${where} cannot be reached (${code}): check this machine's network`);
    case 'ECONNRESET':
    case 'EPIPE':
      return make('connection reset', `${where} reset the connection: a firewall or proxy may cut it`);
    case 'EPROXYDOWN':
      return make(
        'proxy down',
        `${proxy} cannot be reached (${String(err.message)}): check the proxy URL in the config node or HTTPS_PROXY`,
      );
    case 'EPROXY': {
      const status = Number(err.statusCode);
      if (status === 407)
        return make(
          'proxy auth required (407)',
          `${proxy} wants a user name and password (407): set them in the config node's proxy settings`,
        );
      return make(
        `proxy refused (${status})`,
        `${proxy} refused to connect to ${where} (${status}): allow CONNECT to that port in the proxy (tinyproxy ConnectPort, squid SSL_ports); proxies allow 443 (WebSockets) most often`,
      );
    }
    default:
      if (UNTRUSTED.has(code))
        return make(
          'certificate not trusted',
          `the certificate of ${where} is not trusted (${code}): if the hub or gateway has its own CA, put it in the config node (CA), and check this machine's clock`,
        );
      return undefined;
  }
}

/** AMQP error conditions IoT Hub uses (docs/PROTOCOL.md section 5); the local hub rejects with these. */
export const AMQP_CONDITIONS = {
  notFound: 'amqp:not-found',
  resourceLimitExceeded: 'amqp:resource-limit-exceeded',
  messageSizeExceeded: 'amqp:link:message-size-exceeded',
  unauthorized: 'amqp:unauthorized-access',
  quotaExceeded: 'com.microsoft:quota-exceeded',
  throttled: 'com.microsoft:device-container-throttled',
  suspended: 'com.microsoft:iot-hub-suspended',
  timeout: 'com.microsoft:timeout',
  lockLost: 'com.microsoft:message-lock-lost',
  argumentError: 'com.microsoft:argument-error',
  preconditionFailed: 'com.microsoft:precondition-failed',
  detachForced: 'amqp:link:detach-forced',
  internalError: 'amqp:internal-error',
  notAllowed: 'amqp:not-allowed',
  invalidField: 'amqp:invalid-field',
} as const;

const BY_CONDITION: Record<string, [IotHubErrorCode, string]> = {
  [AMQP_CONDITIONS.notFound]: ['DEVICE_NOT_FOUND', 'device not found: register it in the hub or check the device id'],
  [AMQP_CONDITIONS.resourceLimitExceeded]: [
    'QUEUE_FULL',
    // IoT Hub's limit is 50 per device; the hub's description says which limit it applied.
    "the device's C2D queue is full: wait until the device receives some, or purge its queue",
  ],
  [AMQP_CONDITIONS.messageSizeExceeded]: ['MESSAGE_TOO_LARGE', 'the message is larger than IoT Hub accepts (64 KB)'],
  [AMQP_CONDITIONS.unauthorized]: [
    'UNAUTHORIZED',
    'unauthorized: check the key and that the policy has the needed permission',
  ],
  [AMQP_CONDITIONS.quotaExceeded]: ['QUOTA_EXCEEDED', "the hub's daily message quota is used up"],
  [AMQP_CONDITIONS.throttled]: ['THROTTLED', 'the hub is throttling this device: send more slowly'],
  [AMQP_CONDITIONS.suspended]: ['HUB_SUSPENDED', 'the IoT hub is suspended'],
  [AMQP_CONDITIONS.timeout]: ['TIMEOUT', 'the hub timed out'],
  [AMQP_CONDITIONS.lockLost]: ['LOCK_LOST', 'the message lock was lost: the hub will deliver the message again'],
  [AMQP_CONDITIONS.argumentError]: ['INVALID_ARGUMENT', 'the hub refused an argument'],
  [AMQP_CONDITIONS.preconditionFailed]: ['PRECONDITION_FAILED', 'a precondition failed'],
  [AMQP_CONDITIONS.detachForced]: ['DETACHED', 'the hub closed the link'],
  [AMQP_CONDITIONS.internalError]: ['INTERNAL', 'the hub had an internal error'],
  'com.microsoft:device-not-found': [
    'DEVICE_NOT_FOUND',
    'device not found: register it in the hub or check the device id',
  ],
};

/**
 * Text from a value a peer sent, of whatever AMQP type it came as; never throws. String() is not safe on what a hostile
 * peer can send: a map holding a "toString" or "valueOf" key decodes to an object String() and Number() throw on.
 */
export function peerText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return Number.isFinite(v.getTime()) ? v.toISOString() : undefined;
  try {
    return JSON.stringify(v) ?? undefined;
  } catch {
    return undefined;
  }
}

/** Maps an AMQP error (condition + description) to a typed error; JSON descriptions are unpacked. */
export function fromAmqpError(err: { condition?: string; description?: string } | undefined | null): IotHubError {
  // Whatever types the hub put there (a detach or disposition is the peer's to write).
  const condition = typeof err?.condition === 'string' ? err.condition : '';
  let detail = typeof err?.description === 'string' ? err.description : '';
  if (detail.startsWith('{')) {
    try {
      const j = JSON.parse(detail) as { Message?: unknown; message?: unknown } | null;
      const inner = j?.message ?? j?.Message;
      if (typeof inner === 'string') detail = inner;
    } catch {
      // Not JSON after all: keep the text.
    }
  }
  // Own keys only: a condition named "constructor" or "__proto__" found Object's own and threw (not iterable).
  const known = Object.hasOwn(BY_CONDITION, condition) ? BY_CONDITION[condition] : undefined;
  const [code, text] = known ?? ['PROTOCOL_ERROR', `the hub refused the request (${condition || 'no condition'})`];
  return new IotHubError(code, detail ? `${text} (${redact(detail)})` : text, {
    amqpCondition: condition || undefined,
  });
}

/** MQTT 3.1.1 CONNACK return codes. */
export function fromConnackCode(rc: number): IotHubError {
  switch (rc) {
    case 1:
      return new IotHubError('PROTOCOL_ERROR', 'the hub refused the MQTT protocol version (CONNACK 1)');
    case 2:
      return new IotHubError('UNAUTHORIZED', 'the hub rejected the client id (CONNACK 2): check the device id');
    case 3:
      return new IotHubError('NOT_CONNECTED', 'the hub is unavailable (CONNACK 3)', { retryable: true });
    case 4:
      return new IotHubError('UNAUTHORIZED', 'bad user name or password (CONNACK 4): check the key or token');
    case 5:
      return new IotHubError(
        'UNAUTHORIZED',
        "not authorized (CONNACK 5): check the key, the token's expiry and that the device is enabled",
      );
    default:
      return new IotHubError('PROTOCOL_ERROR', `unexpected CONNACK return code ${rc}`);
  }
}

/** Removes anything shaped like a key, signature or token from text that came from elsewhere. */
export function redact(text: string): string {
  return text
    .replace(/SharedAccessSignature\s+[^\s"';]+/gi, 'SharedAccessSignature <redacted>')
    .replace(/(SharedAccessKey|sig|SharedAccessSignature)=([^;&\s"']+)/gi, '$1=<redacted>');
}
