// Assembles a running server from a ServerConfig: device models, one IOMMU
// context per device (each vfio-user client is its own type1 "container",
// so two devices may map the same IOVAs), listeners, and the control socket.
import * as native from '../native/index.js';
import { createDeviceByName, type DeviceModel } from '../devices/index.js';
import { IommuContext } from '../iommu/context.js';
import { ClientDmaSpace } from '../iommu/client-dma.js';
import type { ServerConfig } from './config.js';
import { rootLog, setLogLevel, type Log } from './log.js';
import { VfioUserServer, type DeviceHost } from './server.js';
import { ControlServer } from './control.js';

export interface RunningServer {
  readonly server: VfioUserServer;
  readonly models: ReadonlyMap<string, DeviceModel>;
  readonly contexts: ReadonlyMap<string, IommuContext>;
  /** The control socket, when the config names one. */
  readonly control: ControlServer | null;
  host(name: string): DeviceHost;
  /** Stops listening, drops clients, removes the socket files. */
  close(): Promise<void>;
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
    async close() {
      server.close();
      await control?.close();
    },
  };
}
