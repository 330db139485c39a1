/**
 * What a config node of the Device Provisioning Service kind owns: one provisioned device per registration id, shared
 * by every node acting as it. Each is registered with DPS once (or found in the AssignmentStore, so a restart does not
 * register again), then connected to its assigned hub through a HubSession per hub, with the device's (derived) key.
 * When that hub says the device is unauthorized or gone, the device registers again, once at once, then only on the
 * slow schedule of ConnectionLifecycle, never in a loop. No Node-RED import.
 */
import { ConnectGate } from './connect-gate';
import type { AssignmentStore } from './dps-assignments';
import {
  checkRegistrationId,
  DpsAssignment,
  DpsEndpoint,
  DpsRegistrationOptions,
  DpsTransportKind,
  registerDevice,
} from './dps-client';
import { deriveDeviceKey } from './dps-key';
import { IotHubError } from './errors';
import { DeviceLease, DeviceUser, HubSession, HubSessionOptions, ServiceLease } from './hub-session';
import { ConnectionLifecycle } from './lifecycle';
import type { RetryOptions } from './retry';
import type { StatusEvent } from './state';
import type { DeviceCredentials, SettleOutcome } from './transport';

export interface DpsSessionOptions {
  dps: DpsEndpoint & { idScope: string; transport: DpsTransportKind; timeoutMs?: number };
  /** individual: the key is the device's own enrollment key; group: each device's key is derived from it. */
  attestation: 'individual' | 'group';
  enrollmentKey?: string;
  store: AssignmentStore;
  /** How to reach the assigned hubs: transport, ports, CA, a connect host... (the connection comes from DPS). */
  hub: Omit<HubSessionOptions, 'connection'>;
  /** Registration retries; also the slow schedule after "unauthorized". Defaults as RetryPolicy. */
  retry?: RetryOptions;
  /** Registrations under way at once, the others wait their turn (ConnectGate). Default 10. */
  registrationConcurrency?: number;
  /** Runs before each registration: the built-in local hub enrolls the device or its group there. */
  beforeRegister?: (registrationId: string, key: string) => Promise<void>;
  /** The registration itself (tests put a fake here). */
  register?: (o: DpsRegistrationOptions) => Promise<DpsAssignment>;
  /** Says, without a key, what the session decided: an assignment (detail), a re-registration (info). */
  log?: (text: string, level: 'info' | 'detail') => void;
}

const linger = (o: DpsSessionOptions) => o.hub.lingerMs ?? 5000;

class ProvisionedDevice {
  readonly users = new Set<DeviceUser>();
  lastStatus: StatusEvent | undefined;
  assignment: DpsAssignment | undefined;
  private inner: DeviceLease | undefined;
  /** Bumped whenever the inner lease changes: events of an older one are ignored. */
  private generation = 0;
  private registering: AbortController | undefined;
  /** Waiting for a registration slot: leaves the line. */
  private cancelWait: (() => void) | undefined;
  private phase: 'provisioning' | 'hub' = 'provisioning';
  /** Hub refusals since the hub last said connected: the first registers again at once, the next wait their turn. */
  private refusals = 0;
  private readonly life: ConnectionLifecycle;
  lingerTimer: NodeJS.Timeout | undefined;
  closed = false;

  constructor(
    private readonly session: DpsSession,
    readonly registrationId: string,
    private readonly key: string,
    private readonly settle: 'auto' | 'manual',
  ) {
    this.life = new ConnectionLifecycle(session.options.retry, (ev) => {
      if (this.phase === 'provisioning') this.emit({ ...ev, provisioning: true });
    });
    this.assignment = session.options.store.get(session.options.dps.idScope, registrationId);
  }

  private emit(ev: StatusEvent): void {
    this.lastStatus = ev;
    for (const u of this.users) u.onStatus(ev);
  }

  start(): void {
    if (this.closed || this.inner || this.registering || this.life.retryPending) return;
    if (this.assignment) this.connectHub();
    else this.provision();
  }

  private provision(): void {
    if (this.closed || this.registering) return;
    this.phase = 'provisioning';
    this.life.connecting();
    const ac = new AbortController();
    this.registering = ac;
    // A fleet registers a few at a time: DPS throttles a burst (429), and every device waiting counts against its time-out.
    let started = false;
    const cancel = this.session.gate.enter((release) => {
      started = true;
      this.cancelWait = undefined;
      if (ac.signal.aborted) {
        release();
        return;
      }
      this.runRegistration(ac, release);
    });
    if (!started) this.cancelWait = cancel;
  }

  private runRegistration(ac: AbortController, release: () => void): void {
    const o = this.session.options;
    const run = async () => {
      await o.beforeRegister?.(this.registrationId, this.key);
      return (o.register ?? registerDevice)({
        ...o.dps,
        registrationId: this.registrationId,
        symmetricKey: this.key,
        signal: ac.signal,
      });
    };
    run().then(
      (a) => {
        release();
        if (this.registering === ac) this.registering = undefined;
        this.session.registrations++;
        o.store.set(o.dps.idScope, this.registrationId, a);
        if (this.closed) return;
        this.assignment = a;
        o.log?.(`${this.registrationId}: DPS assigned device "${a.deviceId}" on ${a.assignedHub}`, 'detail');
        if (this.users.size > 0) this.connectHub();
      },
      (err: unknown) => {
        release();
        if (this.registering === ac) this.registering = undefined;
        if (this.closed || ac.signal.aborted) return;
        const e =
          err instanceof IotHubError
            ? err
            : new IotHubError('INTERNAL', `DPS registration failed: ${(err as Error)?.message ?? 'unknown error'}`);
        this.life.lost(e, () => this.provision());
      },
    );
  }

  private connectHub(): void {
    const a = this.assignment as DpsAssignment;
    this.phase = 'hub';
    const gen = ++this.generation;
    const user: DeviceUser = {
      onStatus: (ev) => {
        if (gen !== this.generation || this.closed) return;
        if (ev.state === 'connected') {
          this.refusals = 0;
          this.life.connected();
        }
        if (ev.state === 'unauthorized' || ev.error?.code === 'DEVICE_NOT_FOUND') {
          this.refused(ev);
          return;
        }
        this.emit(ev);
      },
      onMessage: (m) => {
        if (gen === this.generation) for (const u of this.users) u.onMessage(m);
      },
      onUnreadable: (err, raw) => {
        if (gen === this.generation) for (const u of this.users) u.onUnreadable?.(err, raw);
      },
    };
    try {
      this.inner = this.session.hubFor(a.assignedHub).acquireDevice(a.deviceId, user, this.settle, {
        sharedAccessKey: this.key,
      });
    } catch (err) {
      this.generation++;
      this.emit({
        state: 'error',
        error: err instanceof IotHubError ? err : new IotHubError('INTERNAL', (err as Error).message),
      });
    }
  }

  /** The hub refused the device (deleted, disabled, a key DPS no longer gave it): forget the assignment, register again. */
  private refused(ev: StatusEvent): void {
    const o = this.session.options;
    this.releaseInner(true);
    this.assignment = undefined;
    o.store.delete(o.dps.idScope, this.registrationId);
    this.phase = 'provisioning';
    const why = ev.error?.message ?? ev.state;
    if (this.refusals++ === 0) {
      o.log?.(`${this.registrationId}: the hub refused the device (${why}): registering again with DPS`, 'info');
      this.provision();
    } else {
      this.life.lost(
        ev.error ?? new IotHubError('UNAUTHORIZED', 'the hub refused the device again after a new registration'),
        () => this.provision(),
      );
    }
  }

  private releaseInner(removed: boolean): void {
    const inner = this.inner;
    this.inner = undefined;
    this.generation++;
    if (inner) void inner.release(removed);
  }

  settleMessage(lockToken: string, outcome: SettleOutcome): Promise<void> {
    if (!this.inner)
      return Promise.reject(
        new IotHubError('NOT_CONNECTED', 'the device is not connected; the hub will deliver the message again'),
      );
    return this.inner.settle(lockToken, outcome);
  }

  /** The last user left on a restart: the hub connection lingers (holding messages), so does the registration. */
  park(): void {
    this.releaseInner(false);
  }

  /** A user came back while parked: take up the hub connection again. */
  resume(): void {
    if (this.phase === 'hub' && this.assignment && !this.inner) this.connectHub();
    else this.start();
  }

  close(removed: boolean): void {
    this.closed = true;
    this.life.close();
    this.registering?.abort();
    this.registering = undefined;
    this.cancelWait?.();
    this.cancelWait = undefined;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.releaseInner(removed);
  }
}

export class DpsSession {
  private readonly devices = new Map<string, ProvisionedDevice>();
  private readonly hubs = new Map<string, HubSession>();
  /** Registrations this session completed (tests, the editor). */
  registrations = 0;
  private closed = false;
  readonly gate: ConnectGate;

  constructor(readonly options: DpsSessionOptions) {
    this.gate = new ConnectGate(options.registrationConcurrency ?? 10);
  }

  /** One HubSession per assigned hub: DPS may spread devices over several. */
  hubFor(hostName: string): HubSession {
    const key = hostName.toLowerCase();
    let s = this.hubs.get(key);
    if (!s) {
      s = new HubSession({
        ...this.options.hub,
        connection: { kind: 'device', hostName, hubName: hostName.split(/[.:]/)[0] },
      });
      this.hubs.set(key, s);
    }
    return s;
  }

  /** Registration ids with a provisioned device (tests and the editor). */
  get registrationIds(): string[] {
    return [...this.devices.keys()];
  }

  /** The key a device registers and connects with: its own from the msg, else the individual key, else derived. */
  private keyFor(registrationId: string, credentials?: DeviceCredentials): string {
    if (credentials && 'sharedAccessKey' in credentials) return credentials.sharedAccessKey;
    const k = this.options.enrollmentKey;
    if (!k)
      throw new IotHubError(
        'INVALID_ARGUMENT',
        'no enrollment key: paste the individual or group enrollment key into the config node, or name its environment variable',
        { field: 'dpsKey' },
      );
    return this.options.attestation === 'group' ? deriveDeviceKey(k, registrationId) : k;
  }

  /**
   * A lease on the provisioned device registrationId. credentials from a msg: a device connection string connects to
   * its hub directly (no DPS); a key is the device's own enrollment key (no derivation).
   */
  acquireDevice(
    registrationId: string,
    user: DeviceUser,
    settle: 'auto' | 'manual' = 'auto',
    credentials?: DeviceCredentials & { hostName?: string },
  ): DeviceLease {
    if (this.closed) throw new IotHubError('NOT_CONNECTED', 'the IoT Hub config node is closing');
    if (credentials?.hostName) {
      return this.hubFor(credentials.hostName).acquireDevice(registrationId, user, settle, credentials);
    }
    if (!registrationId)
      throw new IotHubError('INVALID_ARGUMENT', 'no registration id: set a device id in the node', {
        field: 'deviceId',
      });
    checkRegistrationId(registrationId);
    let d = this.devices.get(registrationId);
    const fresh = !d;
    if (!d) {
      d = new ProvisionedDevice(this, registrationId, this.keyFor(registrationId, credentials), settle);
      this.devices.set(registrationId, d);
    }
    const dev = d;
    const parked = dev.lingerTimer !== undefined || (!fresh && dev.users.size === 0);
    if (dev.lingerTimer) clearTimeout(dev.lingerTimer);
    dev.lingerTimer = undefined;
    dev.users.add(user);
    if (dev.lastStatus) user.onStatus(dev.lastStatus);
    if (fresh) dev.start();
    else if (parked) dev.resume();
    let released = false;
    return {
      deviceId: registrationId,
      settle: (lockToken, outcome) => dev.settleMessage(lockToken, outcome),
      release: async (removed) => {
        if (released) return;
        released = true;
        if (!dev.users.delete(user) || dev.users.size > 0) return;
        const forget = () => {
          if (this.devices.get(registrationId) === dev) this.devices.delete(registrationId);
        };
        if (removed || this.closed || linger(this.options) <= 0) {
          forget();
          dev.close(true);
          return;
        }
        dev.park();
        dev.lingerTimer = setTimeout(() => {
          dev.lingerTimer = undefined;
          if (dev.users.size > 0) return;
          forget();
          dev.close(true);
        }, linger(this.options));
      },
    };
  }

  acquireService(): ServiceLease {
    throw new IotHubError(
      'INVALID_CONNECTION_STRING',
      'a Device Provisioning Service config serves device receive only: c2d send and feedback need a config node with a hub policy connection string',
      { field: 'mode' },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const d of this.devices.values()) d.close(true);
    this.devices.clear();
    this.options.store.flush?.();
    const hubs = [...this.hubs.values()];
    this.hubs.clear();
    await Promise.allSettled(hubs.map((h) => h.close()));
  }
}
