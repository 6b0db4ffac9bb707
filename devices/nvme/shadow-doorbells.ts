// Shadow doorbells (Doorbell Buffer Config, Base 5.8): for I/O queues the
// driver writes each new SQ tail and CQ head into a page of guest memory
// and rings the MMIO doorbell only when the new value passes the EventIdx
// we publish in a second page. The controller keeps reading the shadow
// tails while it has work and publishes EventIdx = tail only when a queue
// goes idle, so a busy guest rings far fewer MMIO doorbells than it submits
// commands. Slot of SQ y: 2y dwords in; CQ y: 2y+1 (doorbell stride 4).
import { DMA_ACCESS_READ, DMA_ACCESS_WRITE, type DeviceDma } from '../../iommu/device-dma.js';
import { loadU32, storeU32 } from '../shared-words.js';
import type { ShadowSlots } from './queues.js';

export class ShadowDoorbells {
  private dbs = 0;
  private eis = 0;
  enabled = false;

  constructor(private readonly dma: () => DeviceDma | undefined) {}

  enable(dbs: number, eis: number): void {
    this.dbs = dbs;
    this.eis = eis;
    this.enabled = true;
  }

  disable(): void {
    this.enabled = false;
  }

  /** The slots of doorbell `index` (SQ y: 2y, CQ y: 2y+1), if shadow doorbells are on (never for the admin queue). */
  slots(index: number): ShadowSlots | undefined {
    if (!this.enabled || index < 2) return undefined;
    return { doorbell: this.dbs + index * 4, eventIdx: this.eis + index * 4 };
  }

  /** The value the driver last wrote to a shadow doorbell, or -1 when it cannot be read synchronously. */
  read(s: ShadowSlots): number {
    const v = this.dma()?.mappedView(s.doorbell, 4, DMA_ACCESS_READ);
    return v ? loadU32(v) : -1;
  }

  /** The shadow value through DMA (memory reached by messages); -1 on a fault. */
  async readSlow(s: ShadowSlots): Promise<number> {
    const dma = this.dma();
    if (!dma) return -1;
    try {
      return (await dma.read(s.doorbell, 4)).readUInt32LE(0);
    } catch {
      return -1;
    }
  }

  /**
   * Publish an EventIdx: the driver rings the MMIO doorbell once its value
   * passes it. Returns a promise when the write went through DMA messages.
   */
  setEventIdx(s: ShadowSlots, value: number): void | Promise<void> {
    const dma = this.dma();
    if (!dma) return;
    const v = dma.mappedView(s.eventIdx, 4, DMA_ACCESS_WRITE);
    if (v) {
      storeU32(v, value);
      return;
    }
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value);
    return dma.write(s.eventIdx, b).catch(() => undefined);
  }
}
