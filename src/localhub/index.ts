/**
 * The local hub: IoT Hub's C2D endpoints on one machine. `start(options)` runs it in-process
 * (tests, the config node's local mode); cli.ts runs it from the command line.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatConnectionString } from '../core/connection-string';
import { createAmqpEndpoint } from './amqp-endpoint';
import { deviceSessions, HubContext, LogFn } from './context';
import { createHttpsEndpoint } from './https-endpoint';
import { DpsData, Enrollment, EnrollmentGroup, Provisioning, ProvisioningStatus } from './dps';
import { createDpsEndpoint } from './dps-mqtt';
import { createMqttEndpoint } from './mqtt-endpoint';
import { C2DQueues, StoredQueues } from './c2d-queues';
import { FeedbackJournal } from './feedback-journal';
import { FeedbackQueue, StoredFeedback } from './feedback-queue';
import { CreateDeviceOptions, Registry, RegistryData } from './registry';
import { JsonStore } from './store';
import { ensureTlsMaterial, GivenCa } from './tls';
import { C2DThrottle, checkTier, Tier } from './tiers';

export interface LocalHubOptions {
  /** The host name in connection strings and certificates (default localhost). */
  host?: string;
  /** Interface to listen on (default 127.0.0.1). */
  bind?: string;
  dataDir?: string;
  /** 0 picks a free port. Defaults: 8883, 5671, 5672, 443, and 0 for the DPS port (MQTT and HTTPS on one TLS port). */
  ports?: { mqtts?: number; amqps?: number; amqp?: number; https?: number; dps?: number };
  devices?: string[];
  /** Individual enrollments (symmetric key); a given key replaces the stored one, none keeps or makes one. */
  enrollments?: EnrollmentOptions[];
  enrollmentGroups?: EnrollmentGroupOptions[];
  /** The retry-after DPS gives with `assigning`, in seconds (default 1). */
  dpsRetryAfterSeconds?: number;
  autoRegister?: boolean;
  queueDepth?: number;
  defaultTtlMs?: number;
  lockMs?: number;
  maxDeliveryCount?: number;
  feedbackBatchMs?: number;
  feedbackBatchSize?: number;
  feedbackTtlMs?: number;
  /** Unacknowledged MQTT publishes per device. */
  mqttInflight?: number;
  /**
   * TLS as served: more names for the server certificate (an IoT Edge gateway's host name), and a CA to issue it from
   * instead of the hub's own (the gateway's; the certificate is then for hostNames only, as an Edge hub's is). Devices
   * then dial a name that is not the hub's HostName, while their tokens still name the hub.
   */
  tls?: { hostNames?: string[]; ca?: GivenCa };
  /** IoT Hub tier whose C2D send throttle applies (tiers.ts), with its number of units (default 1). None: unthrottled. */
  tier?: Tier;
  units?: number;
  log?: LogFn;
}

export interface EnrollmentOptions {
  registrationId: string;
  primaryKey?: string;
  secondaryKey?: string;
  /** The device id to assign (default: the registration id). */
  deviceId?: string;
  provisioningStatus?: ProvisioningStatus;
}

export interface EnrollmentGroupOptions {
  groupId: string;
  primaryKey?: string;
  secondaryKey?: string;
  provisioningStatus?: ProvisioningStatus;
}

export interface LocalHub {
  hostName: string;
  hubConnectionString: string;
  caCertPath: string;
  caPem: string;
  dataDir: string;
  ports: { mqtts: number; amqps: number; amqp: number; https: number; dps: number };
  /** The DPS ID scope, stable per data directory. */
  idScope: string;
  /** `host:port` of the DPS port, the provisioning host for the SDKs' MQTT transport. */
  provisioningHost: string;
  /** Creates or updates an individual enrollment; returns its keys. */
  addEnrollment(opts: EnrollmentOptions): Promise<Enrollment>;
  /** Creates or updates a symmetric-key enrollment group; a device's key is deriveDeviceKey(group key, its id). */
  addEnrollmentGroup(opts: EnrollmentGroupOptions): Promise<EnrollmentGroup>;
  removeEnrollment(registrationId: string): Promise<boolean>;
  removeEnrollmentGroup(groupId: string): Promise<boolean>;
  /** Counters: dpsRegistrations = registration requests DPS accepted since this hub started. */
  stats(): { dpsRegistrations: number };
  deviceConnectionString(id: string): string;
  /** authType selfSigned takes x509Thumbprint / x509SecondaryThumbprint; certificateAuthority needs a CA (addCaCertificate). */
  registerDevice(id: string, opts?: CreateDeviceOptions): Promise<{ primaryKey: string }>;
  /** Registers a CA certificate for CA-signed X.509 devices; verified false models one whose proof is pending. */
  addCaCertificate(name: string, pem: string, verified?: boolean): void;
  policyConnectionString(name: 'iothubowner' | 'service' | 'device' | 'registryReadWrite'): string;
  queueLength(deviceId: string): number;
  /** The registered device ids, and one device's state (the editor's sidebar). */
  deviceIds(): string[];
  hasDevice(id: string): boolean;
  deviceStatus(id: string): string | undefined;
  inspectQueue(deviceId: string): { length: number; locked: number; attached: boolean; link?: string };
  connectedClients(): number;
  isDeviceConnected(deviceId: string): boolean;
  stop(): Promise<void>;
}

interface State {
  registry: RegistryData;
  queues: StoredQueues;
  feedback: StoredFeedback;
  dps?: DpsData;
}

export async function start(options: LocalHubOptions = {}): Promise<LocalHub> {
  const hostName = options.host ?? 'localhost';
  const bind = options.bind ?? '127.0.0.1';
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'iothub-local-'));
  const log: LogFn = options.log ?? (() => undefined);
  const served = options.tls?.ca
    ? (options.tls.hostNames ?? [hostName])
    : [hostName, ...(options.tls?.hostNames ?? [])];
  const material = ensureTlsMaterial(dataDir, served, options.tls?.ca);
  const tier = options.tier ? checkTier(options.tier, options.units) : undefined;

  let store: JsonStore<State> | undefined;
  const saved: State | undefined = new JsonStore<State>(dataDir, () => '{}').load();
  const registry = new Registry(hostName, saved?.registry, options.autoRegister ?? false);
  const feedback = new FeedbackQueue({
    batchMs: options.feedbackBatchMs ?? 1000,
    batchSize: options.feedbackBatchSize ?? 64,
    ttlMs: options.feedbackTtlMs ?? 3600_000,
  });
  const queues = new C2DQueues(
    {
      queueDepth: options.queueDepth ?? 50,
      defaultTtlMs: options.defaultTtlMs ?? 3600_000,
      lockMs: options.lockMs ?? 60_000,
      maxDeliveryCount: options.maxDeliveryCount ?? 10,
    },
    feedback,
    (id) => registry.devices.get(id)?.generationId,
  );
  queues.load(saved?.queues);
  const journal = new FeedbackJournal(dataDir, () => feedback.storedBatches(), log);
  const journaled = journal.load();
  feedback.journal = journal;
  feedback.load(saved?.feedback, journaled);
  for (const id of options.devices ?? []) if (!registry.devices.has(id)) registry.create(id);
  let ports: LocalHub['ports'] | undefined;
  // Assigned devices get the hub's MQTT host, with its port when not 8883 (the SDKs dial `mqtts://{assignedHub}`).
  const hostFor = (port: number, standard: number) => (port === standard ? hostName : `${hostName}:${port}`);
  const dps = new Provisioning(
    registry,
    {
      retryAfterSeconds: options.dpsRetryAfterSeconds ?? 1,
      assignedHub: () => hostFor(ports?.mqtts ?? 8883, 8883),
      log,
    },
    saved?.dps,
  );
  for (const e of options.enrollments ?? []) dps.setEnrollment(e);
  for (const g of options.enrollmentGroups ?? []) dps.setEnrollmentGroup(g);

  store = new JsonStore<State>(
    dataDir,
    () =>
      `{"registry":${JSON.stringify(registry.toJSON())},"queues":${queues.toJSONText()},"feedback":${feedback.toJSONText()},"dps":${JSON.stringify(dps.toJSON())}}`,
  );
  const persist = () => store?.schedule();
  registry.onChange = persist;
  dps.onChange = persist;
  queues.onChange = persist;
  feedback.onChange = persist;
  // Batches of a state file from before the journal are in the journal before the state file is written without them.
  journal.flush();
  store.flush();

  const sessions = deviceSessions();
  const hub: HubContext = {
    hostName,
    hubName: hostName.split('.')[0],
    registry,
    queues,
    feedback,
    log,
    claimDevice: sessions.claimDevice,
    isDeviceConnected: sessions.isDeviceConnected,
    c2dThrottle: tier ? new C2DThrottle(tier.tier, tier.units) : undefined,
  };

  const amqp = createAmqpEndpoint(hub);
  const mqtt = await createMqttEndpoint(hub, { inflight: options.mqttInflight });
  const dpsEndpoint = await createDpsEndpoint(dps, log, material.keyPem, material.certPem);
  const httpsEndpoint = createHttpsEndpoint(hub, amqp, mqtt, material.keyPem, material.certPem, dpsEndpoint);
  const p = options.ports ?? {};
  const sweep = setInterval(
    () => {
      queues.sweep();
      feedback.pump();
    },
    Math.max(50, Math.min(1000, Math.floor((options.lockMs ?? 60_000) / 4))),
  );
  sweep.unref();

  try {
    ports = {
      mqtts: await mqtt.listenTls(p.mqtts ?? 8883, bind, material.keyPem, material.certPem),
      amqps: await amqp.listenTls(p.amqps ?? 5671, bind, material.keyPem, material.certPem),
      amqp: await amqp.listenPlain(p.amqp ?? 5672, bind),
      https: await httpsEndpoint.listen(p.https ?? 443, bind),
      dps: await dpsEndpoint.listen(p.dps ?? 0, bind),
    };
  } catch (err) {
    clearInterval(sweep);
    await Promise.allSettled([amqp.close(), mqtt.close(), httpsEndpoint.close(), dpsEndpoint.close()]);
    feedback.close();
    journal.close();
    const e = err as NodeJS.ErrnoException;
    throw new Error(
      e.code === 'EADDRINUSE'
        ? `the local hub cannot listen: port ${(e as { port?: number }).port ?? ''} is in use; choose other ports`
        : `the local hub cannot start: ${e.message}`,
    );
  }

  const bound = ports;
  // Strings for official SDK apps: a non-standard port rides in HostName (the SDKs then use it for sr too).
  const policyString = (name: string) => {
    const pol = registry.policies.get(name);
    if (!pol) throw new Error(`no policy ${name}`);
    return formatConnectionString({
      hostName: hostFor(bound.amqps, 5671),
      sharedAccessKeyName: pol.name,
      sharedAccessKey: pol.primaryKey,
    });
  };

  let stopped = false;
  return {
    hostName,
    hubConnectionString: policyString('iothubowner'),
    caCertPath: material.caCertPath,
    caPem: material.caPem,
    dataDir,
    ports: bound,
    idScope: dps.idScope,
    provisioningHost: `${hostName}:${bound.dps}`,
    async addEnrollment(opts) {
      return { ...dps.setEnrollment(opts) };
    },
    async addEnrollmentGroup(opts) {
      return { ...dps.setEnrollmentGroup(opts) };
    },
    removeEnrollment: async (id) => dps.removeEnrollment(id),
    removeEnrollmentGroup: async (id) => dps.removeEnrollmentGroup(id),
    stats: () => ({ dpsRegistrations: dps.registrationCount }),
    deviceConnectionString(id) {
      const d = registry.devices.get(id);
      if (!d) throw new Error(`device ${id} is not registered`);
      if (!d.primaryKey || d.authType === 'selfSigned' || d.authType === 'certificateAuthority')
        return formatConnectionString({ hostName: hostFor(bound.mqtts, 8883), deviceId: id, x509: true });
      return formatConnectionString({
        hostName: hostFor(bound.mqtts, 8883),
        deviceId: id,
        sharedAccessKey: d.primaryKey,
      });
    },
    async registerDevice(id, opts) {
      const d = registry.devices.get(id) ?? registry.create(id, opts);
      return { primaryKey: d.primaryKey ?? '' };
    },
    addCaCertificate(name, pem, verified = true) {
      registry.addCertificate(name, pem, verified);
    },
    policyConnectionString: policyString,
    queueLength: (id) => queues.length(id),
    deviceIds: () => [...registry.devices.keys()],
    hasDevice: (id) => registry.devices.has(id),
    deviceStatus: (id) => registry.devices.get(id)?.status,
    inspectQueue: (id) => queues.inspect(id),
    connectedClients: () => sessions.count(),
    isDeviceConnected: (id) => sessions.isDeviceConnected(id),
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(sweep);
      feedback.close();
      await Promise.allSettled([amqp.close(), mqtt.close(), httpsEndpoint.close(), dpsEndpoint.close()]);
      journal.close();
      store?.flush();
      store = undefined;
    },
  };
}
