// Assembles a running server from a ServerSpec: device models, one IOMMU
// context per device (each vfio-user client is its own type1 "container",
// so two devices may map the same IOVAs), listeners, and the control socket.
// A device comes as a kind (a built-in name, a module path or a definition)
// with options, or as a model the caller built.
import * as native from '../native/index.js';
import { checkDefinition, validateOptions, type DeviceDefinition, type DeviceModel } from '../devices/definition.js';
import { kindLabel, resolveDeviceKind } from '../devices/load.js';
import { IommuContext } from '../iommu/context.js';
import { ClientDmaSpace } from '../iommu/client-dma.js';
import { rootLog, setLogLevel, type Log } from './log.js';
import { VfioUserServer, releaseTimeoutOf, type DeviceHost, type ShutdownOptions } from './server.js';
import { ControlServer } from './control.js';
import { FaultInjector } from '../faults/injector.js';
import { SeededRandom } from '../faults/prng.js';
import { withDeviceDma } from './dma-space.js';
import { Recorder, type RecorderOptions } from '../trace/recorder.js';
import { tapDeviceDma } from '../trace/dma-tap.js';
import { setPollLimit } from './adaptive-poll.js';

/** A device built by startServer from its kind and options. */
export interface DeviceFromKind {
  /** Unique; names the device in logs and on the control socket. */
  name: string;
  /** UNIX socket path QEMU connects to. */
  socket: string;
  /** A built-in kind ("gpio"), a device module's path (relative to the cwd) or a definition. */
  kind: string | DeviceDefinition;
  /** Checked against the kind's options schema; defaults fill the rest. */
  options?: Record<string, unknown>;
}

/** A device the caller already built. */
export interface ReadyDevice {
  /** Unique; names the device in logs and on the control socket. */
  name: string;
  /** UNIX socket path QEMU connects to. */
  socket: string;
  /** The model (anything with a `device`); served as it is. */
  model: DeviceModel;
}

/** What startServer serves (a checked config file is one). */
export interface ServerSpec {
  devices: ReadonlyArray<DeviceFromKind | ReadyDevice>;
  /** Control socket for the IOMMU API (msgpack frames). */
  control?: string;
  /** silent, error, warn, info, debug or trace. */
  logLevel?: string;
  /**
   * Fault rules in force from the start (faults/rule.ts). With these or a
   * control socket the server runs a fault injector (fault.* operations).
   */
  faults?: readonly unknown[];
  /** Deterministic mode: devices draw random values from generators seeded with this. */
  deterministic?: number;
  /** Cap of the adaptive socket poll window in µs, for the whole process (0: off). */
  pollUs?: number;
  /**
   * Answer REGION_READs of the ranges a device declares plain (config space,
   * say) in native code, below JS (default true). Off, every message goes
   * through TypeScript.
   */
  nativeReads?: boolean;
  /** Record every vfio-user message of every device to a file (trace/format.ts). */
  record?: RecordSpec;
}

/** Where and how a server records its sessions. */
export interface RecordSpec extends RecorderOptions {
  /** The recording's path (created or truncated). */
  file: string;
}

/** A server started by startServer. */
export interface RunningServer {
  readonly server: VfioUserServer;
  readonly models: ReadonlyMap<string, DeviceModel>;
  readonly contexts: ReadonlyMap<string, IommuContext>;
  /** The control socket, when the config names one. */
  readonly control: ControlServer | null;
  /** The fault injector, when the spec has fault rules or a control socket. */
  readonly faults: FaultInjector | null;
  /** The recording, when the config asks for one (note() adds events to it). */
  readonly recorder: Recorder | null;
  host(name: string): DeviceHost;
  /**
   * Stops listening and removes the socket files, asks connected clients to
   * release their devices (REQ) and waits a bounded time for them to leave,
   * then drops the rest. A second call waits for the first.
   */
  close(opts?: ShutdownOptions): Promise<void>;
}

/** Builds the devices, listens on their sockets (and the control socket), and resolves once all listen. */
export async function startServer(cfg: ServerSpec, log: Log = rootLog): Promise<RunningServer> {
  if (cfg.logLevel) setLogLevel(cfg.logLevel);
  if (cfg.pollUs !== undefined) setPollLimit(cfg.pollUs);
  const models = new Map<string, DeviceModel>();
  const contexts = new Map<string, IommuContext>();
  for (const d of cfg.devices) {
    if (models.has(d.name)) throw new Error(`device name '${d.name}' is used twice`);
    models.set(d.name, 'model' in d ? d.model : await createModel(d, log.child(d.name), cfg.deterministic));
    const ctx = new IommuContext({ native });
    ctx.addDevice(d.name);
    contexts.set(d.name, ctx);
  }
  const faults = cfg.faults !== undefined || cfg.control ? new FaultInjector([...models.keys()], { log: log.child('faults') }) : null;
  cfg.faults?.forEach((r, i) => faults!.add(r, `faults[${i}]`));
  const recorder = cfg.record ? Recorder.open(cfg.record.file, cfg.record, log.child('record')) : null;
  // Injected faults are part of what happened: the recording carries them between the messages.
  if (faults && recorder) faults.onFault((event) => recorder.note({ ...event }));
  const server = new VfioUserServer((name) => new ClientDmaSpace(contexts.get(name)!, name), log, recorder ? (name) => {
    const session = recorder.session(name);
    return {
      messages: session,
      wrapSpace: recorder.recordsDma ? (space) => withDeviceDma(space, tapDeviceDma(space.dma, session)) : undefined,
    };
  } : undefined);
  try {
    for (const d of cfg.devices) {
      server.addDevice({
        name: d.name, device: models.get(d.name)!.device, socketPath: d.socket, faults: faults?.device(d.name), nativeReads: cfg.nativeReads,
      });
    }
  } catch (err) {
    server.close();
    recorder?.close();
    throw err;
  }
  let control: ControlServer | null = null;
  if (cfg.control) {
    try {
      control = await ControlServer.open(cfg.control, contexts, log.child('control'), { models, faults });
    } catch (err) {
      server.close();
      recorder?.close();
      throw err;
    }
  }
  let closing: Promise<void> | null = null;
  return {
    server,
    models,
    contexts,
    control,
    faults,
    recorder,
    host(name) {
      const h = server.host(name);
      if (!h) throw new Error(`no device '${name}'`);
      return h;
    },
    close(opts) {
      if (!closing) {
        try {
          releaseTimeoutOf(opts); // refused before anything stops: the caller may call again
        } catch (e) {
          return Promise.reject(e);
        }
        closing = server.shutdown(opts).finally(() => {
          faults?.close();
          recorder?.close();
          return control?.close();
        });
      }
      return closing;
    },
  };
}

async function createModel(d: DeviceFromKind, log: Log, seed: number | undefined): Promise<DeviceModel> {
  const definition = typeof d.kind === 'string' ? await resolveDeviceKind(d.kind) : checkDefinition(d.kind, `device '${d.name}'`);
  const label = typeof d.kind === 'string' ? kindLabel(d.kind, definition) : `a ${definition.kind} device`;
  const options = validateOptions(definition, d.options ?? {}, (k) => `device '${d.name}': '${k}'`, label);
  // Deterministic mode: each device its own stream of the one seed, fixed by its name.
  const entropy = seed === undefined ? undefined : new SeededRandom(seed, `device:${d.name}`);
  const model = await definition.create(options as never, {
    name: d.name,
    log,
    ...(entropy && { entropy: (out: Uint8Array) => entropy.fill(out), deterministic: true }),
  });
  if (typeof model !== 'object' || model === null || typeof model.device?.info !== 'function') {
    throw new Error(`device '${d.name}': ${definition.kind}'s create() returned no { device } (a VfioUserDevice)`);
  }
  return model;
}
