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

  constructor(code: IotHubErrorCode, message: string, opts: IotHubErrorOptions = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'IotHubError';
    this.code = code;
    this.retryable = opts.retryable ?? RETRYABLE.has(code);
    if (opts.amqpCondition !== undefined) this.amqpCondition = opts.amqpCondition;
    if (opts.field !== undefined) this.field = opts.field;
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
    "the device's C2D queue is full (50 messages): wait until the device receives some",
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
