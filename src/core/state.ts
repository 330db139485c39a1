/** What a connection tells its users: the one status vocabulary of both clients, the session and the nodes. */
import type { IotHubError } from './errors';

export type ConnectionState =
  'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'unauthorized' | 'error' | 'closed';

export interface StatusEvent {
  state: ConnectionState;
  attempt?: number;
  nextRetryMs?: number;
  error?: IotHubError;
  /** The device is being registered with the Device Provisioning Service, not yet connected to its hub. */
  provisioning?: boolean;
  /** connected: the transport in use, when transport auto chose it ("mqtt-ws"). */
  via?: string;
}
