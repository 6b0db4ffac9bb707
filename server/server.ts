// The server: one listener per device socket, one client session at a time
// per device. When a client leaves, its DMA mappings go and its IRQ fds are
// closed, the device keeps its state, and the next client is accepted.
// An orderly shutdown first asks each client to release its device (the REQ
// interrupt, QEMU's unplug request) and gives it a bounded time to leave.
import { EventEmitter } from 'node:events';
import type { VfioUserDevice } from '../devices/device.js';
import { Listener } from './listener.js';
import { Session } from './session.js';
import { Disconnect, type MessageTap } from './transport.js';
import type { DmaSpace } from './dma-space.js';
import { rootLog, type Log } from './log.js';
import type { DeviceFaults } from '../faults/device-faults.js';

export interface DeviceEndpoint {
  /** Unique name (logs, control socket). */
  name: string;
  device: VfioUserDevice;
  socketPath: string;
  /** The device's fault rules, when the server injects faults. */
  faults?: DeviceFaults;
  /** Answer the device's plain reads in native code (default true; never while recording). */
  nativeReads?: boolean;
}

/** Makes the per-client DMA space of a device (iommu/client-dma.ts: the IOMMU model's type1 view). */
export type DmaSpaceFactory = (deviceName: string) => DmaSpace;

/** How an orderly shutdown treats connected clients. */
export interface ShutdownOptions {
  /**
   * Milliseconds a client with a REQ eventfd gets to disconnect on its own
   * after REQ is signalled (default DEFAULT_RELEASE_TIMEOUT_MS; 0: do not ask).
   */
  releaseTimeoutMs?: number;
}

/** The default time a client gets to release its device on shutdown. */
export const DEFAULT_RELEASE_TIMEOUT_MS = 1000;
/** The longest release time accepted (a timer's range is 2^31-1 ms; a minute is plenty). */
export const MAX_RELEASE_TIMEOUT_MS = 60_000;

/** The release time `opts` asks for; RangeError unless an integer in [0, MAX_RELEASE_TIMEOUT_MS]. */
export function releaseTimeoutOf(opts: ShutdownOptions = {}): number {
  const ms = opts.releaseTimeoutMs ?? DEFAULT_RELEASE_TIMEOUT_MS;
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_RELEASE_TIMEOUT_MS) {
    throw new RangeError(`releaseTimeoutMs must be an integer in [0, ${MAX_RELEASE_TIMEOUT_MS}], got ${ms}`);
  }
  return ms;
}

/** A connection's recording hooks: its messages, and optionally its DMA space (to see guest-memory accesses). */
export interface ConnectionTaps {
  messages: MessageTap;
  wrapSpace?(space: DmaSpace): DmaSpace;
}

/** Makes the recording hooks of a device's next connection (set only while recording). */
export type ConnectionTapFactory = (deviceName: string) => ConnectionTaps;

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

  constructor(
    readonly endpoint: DeviceEndpoint,
    private readonly makeSpace: DmaSpaceFactory,
    private readonly log: Log,
    private readonly makeTaps?: ConnectionTapFactory,
  ) {
    super();
    this.listener = Listener.open(endpoint.socketPath, (fd) => this.onConnection(fd), log);
  }

  get name(): string { return this.endpoint.name; }
  get device(): VfioUserDevice { return this.endpoint.device; }
  get connected(): boolean { return this.session !== null; }

  private onConnection(fd: number): void {
    this.listener.pause();
    this.connections++;
    const taps = this.makeTaps?.(this.name);
    const plain = this.makeSpace(this.name);
    const space = taps?.wrapSpace ? taps.wrapSpace(plain) : plain;
    const faults = this.endpoint.faults ?? null;
    if (faults) faults.session = this.connections;
    this.log.info(`client connected (#${this.connections})`);
    this.session = new Session(fd, this.device, space, this.log, (err) => {
      if (err instanceof Disconnect && err.orderly) this.log.info(`client disconnected: ${err.message}`);
      else if (err) this.log.warn(`client dropped: ${err.message}`);
      else this.log.info('client disconnected');
      faults?.release(); // a reply held for a client that is gone
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
    }, this.commandCounts, faults, taps?.messages, this.endpoint.nativeReads ?? true);
    this.emit('connect');
  }

  /** Stop accepting clients and remove the socket file; the current client stays. */
  stopListening(): void {
    this.listener.close();
  }

  /**
   * Asks the connected client to release the device (signals its REQ
   * eventfd) and waits until it disconnects or `timeoutMs` passes. Resolves
   * true if the client left on its own, false if it was not asked (no
   * client, no REQ eventfd, timeoutMs 0) or did not leave in time.
   */
  requestRelease(timeoutMs: number): Promise<boolean> {
    if (!this.session || timeoutMs <= 0) return Promise.resolve(false);
    let signalled = false;
    try {
      signalled = this.device.requestRelease?.() ?? false;
    } catch (e) {
      this.log.warn(`release request failed: ${String(e)}`);
    }
    if (!signalled) return Promise.resolve(false);
    this.log.info(`asked the client to release the device; waiting up to ${timeoutMs} ms`);
    return new Promise((resolve) => {
      const left = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.off('disconnect', left);
        this.log.info('the client kept the device; closing its connection');
        resolve(false);
      }, timeoutMs);
      this.once('disconnect', left);
    });
  }

  close(): void {
    this.session?.close();
    this.listener.close();
  }
}

export class VfioUserServer {
  readonly hosts = new Map<string, DeviceHost>();

  constructor(
    private readonly makeSpace: DmaSpaceFactory,
    private readonly log: Log = rootLog,
    /** Recording hooks for every connection (only while recording). */
    private readonly makeTaps?: ConnectionTapFactory,
  ) {}

  addDevice(endpoint: DeviceEndpoint): DeviceHost {
    if (this.hosts.has(endpoint.name)) throw new Error(`device name '${endpoint.name}' is used twice`);
    for (const h of this.hosts.values()) {
      if (h.endpoint.socketPath === endpoint.socketPath) throw new Error(`socket ${endpoint.socketPath} is used twice`);
    }
    const host = new DeviceHost(endpoint, this.makeSpace, this.log.child(endpoint.name), this.makeTaps);
    this.hosts.set(endpoint.name, host);
    return host;
  }

  host(name: string): DeviceHost | undefined {
    return this.hosts.get(name);
  }

  /**
   * Orderly stop: stop accepting, ask every connected client to release its
   * device (REQ) and give them up to `releaseTimeoutMs` (all at once, not
   * one after the other) to disconnect, then close() what is left.
   */
  async shutdown(opts: ShutdownOptions = {}): Promise<void> {
    const ms = releaseTimeoutOf(opts); // a bad option is refused before anything stops
    const hosts = [...this.hosts.values()];
    for (const h of hosts) h.stopListening();
    await Promise.all(hosts.map((h) => h.requestRelease(ms)));
    this.close();
  }

  /** Closes every client and listener at once and removes the socket files. */
  close(): void {
    for (const h of this.hosts.values()) h.close();
    this.hosts.clear();
  }
}
