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
  /** Cap of the adaptive socket poll window in µs, for the whole process (0: off). */
  pollUs?: number;
}

/** A server started by startServer. */
export interface RunningServer {
  readonly server: VfioUserServer;
  readonly models: ReadonlyMap<string, DeviceModel>;
  readonly contexts: ReadonlyMap<string, IommuContext>;
  /** The control socket, when the config names one. */
  readonly control: ControlServer | null;
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
    models.set(d.name, 'model' in d ? d.model : await createModel(d, log.child(d.name)));
    const ctx = new IommuContext({ native });
    ctx.addDevice(d.name);
    contexts.set(d.name, ctx);
  }
  const server = new VfioUserServer((name) => new ClientDmaSpace(contexts.get(name)!, name), log);
  try {
    for (const d of cfg.devices) {
      server.addDevice({ name: d.name, device: models.get(d.name)!.device, socketPath: d.socket });
    }
  } catch (err) {
    server.close();
    throw err;
  }
  let control: ControlServer | null = null;
  if (cfg.control) {
    try {
      control = await ControlServer.open(cfg.control, contexts, log.child('control'));
    } catch (err) {
      server.close();
      throw err;
    }
  }
  let closing: Promise<void> | null = null;
  return {
    server,
    models,
    contexts,
    control,
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
        closing = server.shutdown(opts).finally(() => control?.close());
      }
      return closing;
    },
  };
}

async function createModel(d: DeviceFromKind, log: Log): Promise<DeviceModel> {
  const definition = typeof d.kind === 'string' ? await resolveDeviceKind(d.kind) : checkDefinition(d.kind, `device '${d.name}'`);
  const label = typeof d.kind === 'string' ? kindLabel(d.kind, definition) : `a ${definition.kind} device`;
  const options = validateOptions(definition, d.options ?? {}, (k) => `device '${d.name}': '${k}'`, label);
  const model = await definition.create(options as never, { name: d.name, log });
  if (typeof model !== 'object' || model === null || typeof model.device?.info !== 'function') {
    throw new Error(`device '${d.name}': ${definition.kind}'s create() returned no { device } (a VfioUserDevice)`);
  }
  return model;
}
