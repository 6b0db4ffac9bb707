// The server: one listener per device socket, one client session at a time
// per device. When a client leaves, its DMA mappings go and its IRQ fds are
// closed, the device keeps its state, and the next client is accepted.
import { EventEmitter } from 'node:events';
import type { VfioUserDevice } from '../devices/device.js';
import { Listener } from './listener.js';
import { Session } from './session.js';
import { Disconnect } from './transport.js';
import type { DmaSpace } from './dma-space.js';
import { rootLog, type Log } from './log.js';

export interface DeviceEndpoint {
  /** Unique name (logs, control socket). */
  name: string;
  device: VfioUserDevice;
  socketPath: string;
}

/** Makes the per-client DMA space of a device (iommu/client-dma.ts: the IOMMU model's type1 view). */
export type DmaSpaceFactory = (deviceName: string) => DmaSpace;

export interface DeviceHostEvents {
  connect: [];
  disconnect: [error?: Error];
}

export class DeviceHost extends EventEmitter<DeviceHostEvents> {
  private session: Session | null = null;
  private readonly listener: Listener;
  /** Clients served so far (tests and status). */
  connections = 0;
  /** Requests received per command name, over all clients (e.g. DMA_MAP). */
  readonly commandCounts: Record<string, number> = {};

  constructor(readonly endpoint: DeviceEndpoint, private readonly makeSpace: DmaSpaceFactory, private readonly log: Log) {
    super();
    this.listener = Listener.open(endpoint.socketPath, (fd) => this.onConnection(fd), log);
  }

  get name(): string { return this.endpoint.name; }
  get device(): VfioUserDevice { return this.endpoint.device; }
  get connected(): boolean { return this.session !== null; }

  private onConnection(fd: number): void {
    this.listener.pause();
    this.connections++;
    const space = this.makeSpace(this.name);
    this.log.info(`client connected (#${this.connections})`);
    this.session = new Session(fd, this.device, space, this.log, (err) => {
      if (err instanceof Disconnect && err.orderly) this.log.info(`client disconnected: ${err.message}`);
      else if (err) this.log.warn(`client dropped: ${err.message}`);
      else this.log.info('client disconnected');
      try {
        this.device.detachClient();
      } finally {
        // Accept the next client only once the old mappings are gone.
        space.dropAll().catch((e) => this.log.error('dropping DMA mappings failed', e)).finally(() => {
          this.session = null;
          this.listener.resume();
          this.emit('disconnect', err);
        });
      }
    }, this.commandCounts);
    this.emit('connect');
  }

  close(): void {
    this.session?.close();
    this.listener.close();
  }
}

export class VfioUserServer {
  readonly hosts = new Map<string, DeviceHost>();

  constructor(private readonly makeSpace: DmaSpaceFactory, private readonly log: Log = rootLog) {}

  addDevice(endpoint: DeviceEndpoint): DeviceHost {
    if (this.hosts.has(endpoint.name)) throw new Error(`device name '${endpoint.name}' is used twice`);
    for (const h of this.hosts.values()) {
      if (h.endpoint.socketPath === endpoint.socketPath) throw new Error(`socket ${endpoint.socketPath} is used twice`);
    }
    const host = new DeviceHost(endpoint, this.makeSpace, this.log.child(endpoint.name));
    this.hosts.set(endpoint.name, host);
    return host;
  }

  host(name: string): DeviceHost | undefined {
    return this.hosts.get(name);
  }

  /** Closes every client and listener and removes the socket files. */
  close(): void {
    for (const h of this.hosts.values()) h.close();
    this.hosts.clear();
  }
}
