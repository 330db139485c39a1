/**
 * The devices one device receive node acts as: fixed ones from its settings and ones connected at run time by a msg.
 * Each has its own lease on the HubSession (so its own connection, shared with any other node acting as it); the fleet
 * keeps their states for a summary and routes settling to the right device. No Node-RED import.
 */
import { IotHubError } from './errors';
import type { DeviceLease, DeviceUser } from './hub-session';
import { checkDeviceId, ReceivedC2DMessage } from './message';
import type { ConnectionState, StatusEvent } from './state';
import type { DeviceCredentials, SettleOutcome, UnreadableMessage } from './transport';

export type AcquireDevice = (
  deviceId: string,
  user: DeviceUser,
  credentials?: DeviceCredentials,
) => Promise<DeviceLease>;

export interface FleetEvents {
  message(deviceId: string, m: ReceivedC2DMessage): void;
  status(deviceId: string, ev: StatusEvent): void;
  /** A message for deviceId could not be read: it was acknowledged or dead-lettered, not delivered. */
  unreadable(deviceId: string, err: IotHubError, raw: UnreadableMessage): void;
}

export interface FleetDevice {
  deviceId: string;
  state: ConnectionState;
  /** Connected by a msg (msg.action "connect"), not by the node's settings. */
  byMsg: boolean;
}

interface Member {
  deviceId: string;
  state: ConnectionState;
  byMsg: boolean;
  lease?: DeviceLease;
  /** Set once removed: a lease that arrives later goes straight back. */
  gone: boolean;
}

export class DeviceFleet {
  private readonly members = new Map<string, Member>();
  private closing = false;

  constructor(
    private readonly acquire: AcquireDevice,
    private readonly events: FleetEvents,
  ) {}

  get size(): number {
    return this.members.size;
  }

  has(deviceId: string): boolean {
    return this.members.has(deviceId);
  }

  /**
   * Starts acting as deviceId. Refused, naming the field, for an id outside IoT Hub's rule or one already in this
   * fleet; resolves once the lease is held (the connection itself comes up, and back, on its own).
   */
  async add(deviceId: string, byMsg: boolean, credentials?: DeviceCredentials): Promise<void> {
    if (this.closing) throw new IotHubError('NOT_CONNECTED', 'the node is closing');
    checkDeviceId(deviceId);
    if (this.members.has(deviceId)) {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        `device "${deviceId}" is already connected by this node: disconnect it first`,
        { field: 'deviceId' },
      );
    }
    const member: Member = { deviceId, state: 'connecting', byMsg, gone: false };
    this.members.set(deviceId, member);
    const user: DeviceUser = {
      onStatus: (ev) => {
        if (member.gone) return;
        member.state = ev.state;
        this.events.status(deviceId, ev);
      },
      onMessage: (m) => {
        if (!member.gone) this.events.message(deviceId, m);
      },
      onUnreadable: (err, raw) => {
        if (!member.gone) this.events.unreadable(deviceId, err, raw);
      },
    };
    let lease: DeviceLease;
    try {
      lease = await this.acquire(deviceId, user, credentials);
    } catch (err) {
      if (this.members.get(deviceId) === member) this.members.delete(deviceId);
      member.gone = true;
      throw err;
    }
    if (member.gone) {
      await lease.release(true);
      return;
    }
    member.lease = lease;
  }

  /** Stops acting as deviceId: its connection closes unless another node uses it. */
  async remove(deviceId: string): Promise<void> {
    const member = this.members.get(deviceId);
    if (!member)
      throw new IotHubError('INVALID_ARGUMENT', `device "${deviceId}" is not connected by this node`, {
        field: 'deviceId',
      });
    this.members.delete(deviceId);
    member.gone = true;
    await member.lease?.release(true);
  }

  settle(deviceId: string, lockToken: string, outcome: SettleOutcome): Promise<void> {
    const lease = this.members.get(deviceId)?.lease;
    if (!lease)
      return Promise.reject(
        new IotHubError('NOT_CONNECTED', `device "${deviceId}" is not connected; the hub will redeliver the message`),
      );
    return lease.settle(lockToken, outcome);
  }

  list(): FleetDevice[] {
    return [...this.members.values()].map((m) => ({ deviceId: m.deviceId, state: m.state, byMsg: m.byMsg }));
  }

  /** How many devices are in each state. */
  counts(): Partial<Record<ConnectionState, number>> {
    const c: Partial<Record<ConnectionState, number>> = {};
    for (const m of this.members.values()) c[m.state] = (c[m.state] ?? 0) + 1;
    return c;
  }

  /** Lets every device go: removed, at once; otherwise each connection lingers for a redeploy to take it up again. */
  async close(removed: boolean): Promise<void> {
    this.closing = true;
    const all = [...this.members.values()];
    this.members.clear();
    await Promise.allSettled(
      all.map((m) => {
        m.gone = true;
        return m.lease?.release(removed || m.byMsg);
      }),
    );
  }
}
