// Assembles a running server from a ServerConfig: device models, one IOMMU
// context per device (each vfio-user client is its own type1 "container",
// so two devices may map the same IOVAs), listeners, and the control socket.
import * as native from '../native/index.js';
import { createDeviceByName, type DeviceModel } from '../devices/index.js';
import { IommuContext } from '../iommu/context.js';
import { ClientDmaSpace } from '../iommu/client-dma.js';
import type { ServerConfig } from './config.js';
import { rootLog, setLogLevel, type Log } from './log.js';
import { VfioUserServer, releaseTimeoutOf, type DeviceHost, type ShutdownOptions } from './server.js';
import { ControlServer } from './control.js';

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

export async function startServer(cfg: ServerConfig, log: Log = rootLog): Promise<RunningServer> {
  if (cfg.logLevel) setLogLevel(cfg.logLevel);
  const models = new Map<string, DeviceModel>();
  const contexts = new Map<string, IommuContext>();
  for (const d of cfg.devices) {
    models.set(d.name, createDeviceByName(d.kind, d.options));
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
