// virtio-rng (virtio device type 4, "entropy device"): one request queue;
// every device-writable buffer the driver makes available is filled from
// crypto.getRandomValues (in deterministic mode: from the seeded `entropy`),
// straight into guest memory where it is mapped.
import { webcrypto } from 'node:crypto';
import type { Logger } from '../device.js';
import type { FdOps } from '../pci/fd-ops.js';
import type { PciDevice } from '../pci/pci-device.js';
import { VirtioId } from '../virtio/constants.js';
import { withChainViews } from '../virtio/chain-io.js';
import { VirtioPciTransport } from '../virtio/transport.js';
import type { DescChain } from '../virtio/virtqueue.js';

export interface VirtioRngOptions {
  /** Size of the request queue (power of two, default 64). */
  queueSize?: number;
  /** Largest request served, bytes (default 64 KiB); bigger buffers get this much. */
  maxRequest?: number;
  /** Deterministic mode: fills a buffer from a seeded generator instead of crypto. */
  entropy?: (out: Uint8Array) => void;
  /** Deterministic mode: requests complete in the order they were made available. */
  inOrder?: boolean;
  /** Socket-free fd operations (tests). */
  fdOps?: FdOps;
  log?: Logger;
}

/** crypto.getRandomValues fills at most this many bytes per call. */
const GRV_MAX = 65536;

export class VirtioRng {
  readonly kind = 'rng';
  readonly transport: VirtioPciTransport;
  readonly device: PciDevice;
  /** Bytes handed to the guest so far. */
  bytesServed = 0;
  private readonly maxRequest: number;
  private readonly fill: (out: Uint8Array) => void;

  constructor(options: VirtioRngOptions = {}) {
    this.fill = options.entropy ?? cryptoFill;
    this.maxRequest = options.maxRequest ?? 65536;
    if (!Number.isInteger(this.maxRequest) || this.maxRequest < 1) throw new RangeError('maxRequest must be a positive integer');
    this.transport = new VirtioPciTransport(
      {
        name: 'virtio-rng',
        deviceId: VirtioId.RNG,
        classCode: 0xff0000, // unclassified, as QEMU's virtio-rng-pci
        queueSizes: [options.queueSize ?? 64],
        features: 0n,
        config: Buffer.alloc(0),
        handle: (chain) => void this.serve(chain),
      },
      { fdOps: options.fdOps, log: options.log, inOrder: options.inOrder },
    );
    this.device = this.transport.pci;
  }

  private async serve(chain: DescChain): Promise<void> {
    const dma = this.transport.dma;
    const len = Math.min(chain.writable, this.maxRequest);
    if (!dma || len === 0 || chain.stale) return chain.complete(0);
    try {
      await withChainViews(dma, chain, 'writable', 0, len, (segs) => {
        for (const s of segs) this.fill(s);
      });
      this.bytesServed += len;
      chain.complete(len);
    } catch (e) {
      this.transport.log.warn(`virtio-rng: request ${chain.head} failed: ${String(e)}`);
      chain.complete(0);
    }
  }
}

function cryptoFill(out: Uint8Array): void {
  for (let o = 0; o < out.length; o += GRV_MAX) webcrypto.getRandomValues(out.subarray(o, Math.min(out.length, o + GRV_MAX)));
}
