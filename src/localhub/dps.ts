/**
 * The local hub's Device Provisioning Service (docs/PROTOCOL.md, section "Device Provisioning Service"): an ID scope,
 * individual and group enrollments with symmetric keys, registration operations and their answers. The transports
 * (dps-mqtt.ts, dps-rest.ts) only carry these answers; what DPS says, and when, lives here.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { deriveDeviceKey } from '../core/dps-key';
import { checkDeviceId } from '../core/message';
import { parseSasToken, ParsedSasToken, verifySasToken } from '../core/sas';
import { LogFn } from './context';
import { newKey, Registry } from './registry';

export type ProvisioningStatus = 'enabled' | 'disabled';

export interface Enrollment {
  registrationId: string;
  primaryKey: string;
  secondaryKey: string;
  /** The hub device id to assign; the registration id when absent. */
  deviceId?: string;
  provisioningStatus: ProvisioningStatus;
  createdDateTimeUtc: string;
  etag: string;
}

export interface EnrollmentGroup {
  groupId: string;
  primaryKey: string;
  secondaryKey: string;
  provisioningStatus: ProvisioningStatus;
  createdDateTimeUtc: string;
  etag: string;
}

/** What DPS remembers of a device it assigned: a second registration is a re-provisioning. */
export interface RegistrationRecord {
  registrationId: string;
  deviceId: string;
  assignedHub: string;
  groupId?: string;
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
  etag: string;
}

export interface DpsData {
  idScope: string;
  enrollments: Enrollment[];
  groups: EnrollmentGroup[];
  registrations: RegistrationRecord[];
}

/** A DPS answer: HTTP status (also the MQTT response topic's status), body, and retry-after in seconds. */
export interface DpsAnswer {
  status: number;
  body: object;
  retryAfter?: number;
}

interface Operation {
  operationId: string;
  registrationId: string;
  createdMs: number;
  /** Settled on the first status query; until then the device hears `assigning`. */
  result?: DpsAnswer;
}

/** DPS registration ids: up to 128 of a-z A-Z 0-9 . _ - : (case-insensitive). */
const REGISTRATION_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const OPERATION_TTL_MS = 10 * 60_000;

export function checkRegistrationId(id: string, what = 'registration id'): void {
  if (typeof id !== 'string' || !REGISTRATION_ID.test(id))
    throw new Error(`the ${what} "${String(id)}" must be 1 to 128 characters of a-z, A-Z, 0-9 and . _ - :`);
}

export function checkKey(key: string | undefined, field: string): void {
  if (key === undefined) return;
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(key) || key.length % 4 !== 0)
    throw new Error(`${field} must be a base64 key (for example 32 random bytes in base64)`);
  if (Buffer.from(key, 'base64').length < 16) throw new Error(`${field} must hold at least 16 bytes`);
}

/** The error body DPS writes (ProvisioningServiceErrorDetails); `info` says why, without any key. */
function errorAnswer(status: number, errorCode: number, message: string, reason: string): DpsAnswer {
  return {
    status,
    body: {
      errorCode,
      trackingId: randomUUID(),
      message,
      timestampUtc: new Date().toISOString(),
      info: { reason },
    },
  };
}

const now = () => new Date().toISOString();

export interface DpsOptions {
  /** Seconds the device is told to wait before asking for the operation's status. */
  retryAfterSeconds: number;
  /** The host (with :port when not 8883) the devices are assigned to. */
  assignedHub: () => string;
  log: LogFn;
}

export class Provisioning {
  readonly idScope: string;
  readonly enrollments = new Map<string, Enrollment>();
  readonly groups = new Map<string, EnrollmentGroup>();
  readonly registrations = new Map<string, RegistrationRecord>();
  private readonly operations = new Map<string, Operation>();
  /** Registration requests accepted since start (each PUT .../register that authenticated). */
  registrationCount = 0;
  onChange: () => void = () => undefined;

  constructor(
    private readonly registry: Registry,
    private readonly options: DpsOptions,
    data?: DpsData,
  ) {
    // Stable per data directory: the scope is made once and kept in the state file.
    this.idScope = data?.idScope || `0ne${randomBytes(4).toString('hex').toUpperCase()}`;
    for (const e of data?.enrollments ?? []) this.enrollments.set(e.registrationId.toLowerCase(), e);
    for (const g of data?.groups ?? []) this.groups.set(g.groupId, g);
    for (const r of data?.registrations ?? []) this.registrations.set(r.registrationId.toLowerCase(), r);
  }

  toJSON(): DpsData {
    return {
      idScope: this.idScope,
      enrollments: [...this.enrollments.values()],
      groups: [...this.groups.values()],
      registrations: [...this.registrations.values()],
    };
  }

  /** Creates or updates an individual enrollment (as DPS's createOrUpdate); absent keys are kept or made. */
  setEnrollment(opts: {
    registrationId: string;
    primaryKey?: string;
    secondaryKey?: string;
    deviceId?: string;
    provisioningStatus?: ProvisioningStatus;
  }): Enrollment {
    checkRegistrationId(opts.registrationId);
    checkKey(opts.primaryKey, 'primaryKey');
    checkKey(opts.secondaryKey, 'secondaryKey');
    if (opts.provisioningStatus !== undefined && !['enabled', 'disabled'].includes(opts.provisioningStatus))
      throw new Error('provisioningStatus must be "enabled" or "disabled"');
    if (opts.deviceId !== undefined) checkDeviceId(opts.deviceId);
    const key = opts.registrationId.toLowerCase();
    const old = this.enrollments.get(key);
    const e: Enrollment = {
      registrationId: opts.registrationId,
      primaryKey: opts.primaryKey ?? old?.primaryKey ?? newKey(),
      secondaryKey: opts.secondaryKey ?? old?.secondaryKey ?? newKey(),
      provisioningStatus: opts.provisioningStatus ?? old?.provisioningStatus ?? 'enabled',
      createdDateTimeUtc: old?.createdDateTimeUtc ?? now(),
      etag: randomUUID(),
    };
    const deviceId = opts.deviceId ?? old?.deviceId;
    if (deviceId !== undefined) e.deviceId = deviceId;
    this.enrollments.set(key, e);
    this.onChange();
    return e;
  }

  setEnrollmentGroup(opts: {
    groupId: string;
    primaryKey?: string;
    secondaryKey?: string;
    provisioningStatus?: ProvisioningStatus;
  }): EnrollmentGroup {
    checkRegistrationId(opts.groupId, 'enrollment group id');
    checkKey(opts.primaryKey, 'primaryKey');
    checkKey(opts.secondaryKey, 'secondaryKey');
    if (opts.provisioningStatus !== undefined && !['enabled', 'disabled'].includes(opts.provisioningStatus))
      throw new Error('provisioningStatus must be "enabled" or "disabled"');
    const old = this.groups.get(opts.groupId);
    const g: EnrollmentGroup = {
      groupId: opts.groupId,
      primaryKey: opts.primaryKey ?? old?.primaryKey ?? newKey(),
      secondaryKey: opts.secondaryKey ?? old?.secondaryKey ?? newKey(),
      provisioningStatus: opts.provisioningStatus ?? old?.provisioningStatus ?? 'enabled',
      createdDateTimeUtc: old?.createdDateTimeUtc ?? now(),
      etag: randomUUID(),
    };
    this.groups.set(g.groupId, g);
    this.onChange();
    return g;
  }

  removeEnrollment(registrationId: string): boolean {
    const had = this.enrollments.delete(registrationId.toLowerCase());
    if (had) this.onChange();
    return had;
  }

  removeEnrollmentGroup(groupId: string): boolean {
    const had = this.groups.delete(groupId);
    if (had) this.onChange();
    return had;
  }

  /**
   * Who may register as registrationId with this token: the individual enrollment first (DPS prefers it to a group),
   * then the first group whose derived key signed it. Unknown ids and wrong keys are both 401002 "Unauthorized".
   */
  private authenticate(
    idScope: string,
    registrationId: string,
    token: string | undefined,
  ): { enrollment?: Enrollment; group?: EnrollmentGroup; key: string; secondaryKey: string } | DpsAnswer {
    const deny = (reason: string) => {
      this.options.log('info', `DPS: registration ${registrationId} refused: ${reason}`);
      return errorAnswer(401, 401002, 'Unauthorized', reason);
    };
    if (idScope.toLowerCase() !== this.idScope.toLowerCase()) return deny(`unknown ID scope ${idScope}`);
    if (!token) return deny('no SharedAccessSignature (Authorization header or MQTT password)');
    let t: ParsedSasToken;
    try {
      t = parseSasToken(token);
    } catch (err) {
      return deny((err as Error).message);
    }
    const wanted = `${idScope}/registrations/${registrationId}`.toLowerCase();
    if (t.resource.toLowerCase() !== wanted)
      return deny(`the token's resource must be {idScope}/registrations/{registrationId}, that is ${wanted}`);
    if (t.skn !== undefined && t.skn !== 'registration') return deny('the token\'s skn must be "registration"');
    if (t.se < Date.now() / 1000) return deny('the token has expired');
    const signedBy = (...keys: string[]) => keys.some((k) => verifySasToken(t, k));
    const e = this.enrollments.get(registrationId.toLowerCase());
    if (e) {
      if (!signedBy(e.primaryKey, e.secondaryKey))
        return deny('the token is not signed with the individual enrollment key');
      return { enrollment: e, key: e.primaryKey, secondaryKey: e.secondaryKey };
    }
    for (const g of this.groups.values()) {
      const primary = deriveDeviceKey(g.primaryKey, registrationId);
      const secondary = deriveDeviceKey(g.secondaryKey, registrationId);
      if (signedBy(primary, secondary)) return { group: g, key: primary, secondaryKey: secondary };
    }
    return deny(
      this.groups.size
        ? 'no individual enrollment, and no enrollment group key derives the key that signed the token'
        : 'no enrollment for this registration id',
    );
  }

  /** PUT {idScope}/registrations/{id}/register: 202 `assigning` with an operation id and retry-after. */
  register(idScope: string, registrationId: string, token: string | undefined, body: unknown): DpsAnswer {
    const who = this.authenticate(idScope, registrationId, token);
    if ('status' in who) return who;
    const bodyId = (body as { registrationId?: unknown } | undefined)?.registrationId;
    if (bodyId !== undefined && bodyId !== registrationId)
      return errorAnswer(400, 400004, 'Bad request', "the body's registrationId differs from the one in the path");
    this.registrationCount++;
    const nowMs = Date.now();
    for (const [id, op] of this.operations) if (nowMs - op.createdMs > OPERATION_TTL_MS) this.operations.delete(id);
    const operationId = `4.${randomBytes(8).toString('hex')}.${randomUUID()}`;
    this.operations.set(operationId, { operationId, registrationId, createdMs: nowMs });
    return {
      status: 202,
      body: { operationId, status: 'assigning' },
      retryAfter: this.options.retryAfterSeconds,
    };
  }

  /** GET {idScope}/registrations/{id}/operations/{operationId}: the assignment, done on the first query. */
  operationStatus(idScope: string, registrationId: string, token: string | undefined, operationId: string): DpsAnswer {
    const who = this.authenticate(idScope, registrationId, token);
    if ('status' in who) return who;
    const op = this.operations.get(operationId);
    if (!op || op.registrationId.toLowerCase() !== registrationId.toLowerCase())
      return errorAnswer(404, 404203, 'Operation not found', `no operation ${operationId} for ${registrationId}`);
    try {
      op.result ??= this.assign(operationId, registrationId, who);
    } catch (err) {
      // Not kept: a later query tries again.
      this.options.log('error', `DPS: assigning ${registrationId} failed: ${(err as Error).message}`);
      return errorAnswer(500, 500000, 'Internal server error', `the assignment failed: ${(err as Error).message}`);
    }
    return op.result;
  }

  private assign(
    operationId: string,
    registrationId: string,
    who: { enrollment?: Enrollment; group?: EnrollmentGroup; key: string; secondaryKey: string },
  ): DpsAnswer {
    const status = (who.enrollment ?? who.group)!.provisioningStatus;
    const stamp = now();
    if (status === 'disabled') {
      // Real DPS answers a disabled enrollment through the operation: assigning, then `disabled`
      // (docs/PROTOCOL.md, DPS section, the fact on disabled enrollments).
      this.options.log('info', `DPS: registration ${registrationId} refused: its enrollment is disabled`);
      return {
        status: 200,
        body: {
          operationId,
          status: 'disabled',
          registrationState: {
            registrationId,
            status: 'disabled',
            errorMessage: 'the enrollment is disabled',
            createdDateTimeUtc: stamp,
            lastUpdatedDateTimeUtc: stamp,
          },
        },
      };
    }
    const deviceId = who.enrollment?.deviceId ?? registrationId;
    const device = this.registry.devices.get(deviceId);
    if (!device) this.registry.create(deviceId, { primaryKey: who.key, secondaryKey: who.secondaryKey });
    else if (device.primaryKey !== who.key || device.secondaryKey !== who.secondaryKey)
      this.registry.update(deviceId, { primaryKey: who.key, secondaryKey: who.secondaryKey });
    const old = this.registrations.get(registrationId.toLowerCase());
    const record: RegistrationRecord = {
      registrationId,
      deviceId,
      assignedHub: this.options.assignedHub(),
      createdDateTimeUtc: old?.createdDateTimeUtc ?? stamp,
      lastUpdatedDateTimeUtc: stamp,
      etag: randomUUID(),
    };
    if (who.group) record.groupId = who.group.groupId;
    this.registrations.set(registrationId.toLowerCase(), record);
    this.onChange();
    this.options.log('info', `DPS: ${registrationId} assigned to ${record.assignedHub} as device ${deviceId}`);
    return {
      status: 200,
      body: {
        operationId,
        status: 'assigned',
        registrationState: {
          registrationId,
          createdDateTimeUtc: record.createdDateTimeUtc,
          assignedHub: record.assignedHub,
          deviceId,
          status: 'assigned',
          substatus: old ? 'reprovisionedToInitialAssignment' : 'initialAssignment',
          lastUpdatedDateTimeUtc: record.lastUpdatedDateTimeUtc,
          etag: record.etag,
        },
      },
    };
  }
}
