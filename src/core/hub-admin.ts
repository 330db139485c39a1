/**
 * What the editor's IoT Hub sidebar and device pickers ask of one config node: the registry with each device's state and
 * C2D queue depth, the feedback outcomes and sends of late, purging a queue, and (local hub only) creating a device.
 * The local hub is read in-process (its queues tell enqueued from locked); Azure through the REST registry API.
 * Nothing here returns a key, but the one connection string `createDevice` was asked for.
 */
import { IotHubError } from './errors';
import { FeedbackStats, SendRow } from './hub-activity';
import type { PurgeResult } from './hub-rest';
import type { HubSession } from './hub-session';
import { checkDeviceId } from './message';

/** The slice of the local hub (src/localhub) this needs; structural, so core does not import it. */
export interface LocalHubView {
  deviceIds(): string[];
  deviceStatus(id: string): string | undefined;
  inspectQueue(id: string): { length: number; locked: number };
  isDeviceConnected(id: string): boolean;
  registerDevice(id: string): Promise<{ primaryKey: string }>;
  hasDevice(id: string): boolean;
  deviceConnectionString(id: string): string;
}

export interface DeviceRow {
  deviceId: string;
  status: string;
  connectionState: 'Connected' | 'Disconnected' | string;
  /** Messages in the device's C2D queue (enqueued and locked). */
  queued: number;
  /** Of those, delivered and not yet settled (local hub only). */
  locked?: number;
}

export interface DeviceList {
  source: 'local' | 'azure';
  devices: DeviceRow[];
}

export class HubAdmin {
  constructor(
    private readonly session: HubSession,
    private readonly local?: LocalHubView,
  ) {}

  get isLocal(): boolean {
    return !!this.local;
  }

  async devices(): Promise<DeviceList> {
    const local = this.local;
    if (local) {
      const devices = local
        .deviceIds()
        .sort()
        .map((deviceId) => {
          const q = local.inspectQueue(deviceId);
          return {
            deviceId,
            status: local.deviceStatus(deviceId) ?? 'enabled',
            connectionState: local.isDeviceConnected(deviceId) ? 'Connected' : 'Disconnected',
            queued: q.length,
            locked: q.locked,
          };
        });
      return { source: 'local', devices };
    }
    const listed = await this.session.rest.listDevices();
    return {
      source: 'azure',
      devices: listed
        .map((d) => ({
          deviceId: d.deviceId,
          status: d.status,
          connectionState: d.connectionState,
          queued: d.cloudToDeviceMessageCount,
        }))
        .sort((a, b) => (a.deviceId < b.deviceId ? -1 : a.deviceId > b.deviceId ? 1 : 0)),
    };
  }

  feedback(minutes: number): FeedbackStats & { listening: boolean } {
    return { ...this.session.activity.stats(minutes), listening: this.session.feedbackListening };
  }

  sends(limit: number): SendRow[] {
    return this.session.activity.recentSends(limit);
  }

  purge(deviceId: string): Promise<PurgeResult> {
    checkDeviceId(deviceId);
    return this.session.rest.purge(deviceId);
  }

  /** Local hub only: registers the device and returns its connection string (the one answer that holds a key). */
  async createDevice(deviceId: string): Promise<{ deviceId: string; connectionString: string }> {
    checkDeviceId(deviceId);
    const local = this.local;
    if (!local) {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        'devices can be created here only on the local hub: create them in the Azure portal or with the Azure CLI',
        { field: 'mode' },
      );
    }
    if (local.hasDevice(deviceId))
      throw new IotHubError('PRECONDITION_FAILED', `device ${deviceId} already exists`, { field: 'deviceId' });
    await local.registerDevice(deviceId);
    return { deviceId, connectionString: local.deviceConnectionString(deviceId) };
  }
}
