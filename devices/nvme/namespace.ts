// A namespace on a raw image file: its LBA format (512 or 4096 bytes, one
// format per namespace, no metadata) and its size in blocks. The file is
// opened (or created) by the shared block-image code; blocks past the last
// whole one are not exposed.
import fs from 'node:fs';
import { openImage } from '../block/image.js';

/** The LBA sizes a namespace can be formatted with. */
export const LBA_SIZES = [512, 4096] as const;

export class Namespace {
  /** Block size in bytes. */
  readonly lbaSize: number;
  /** log2(lbaSize). */
  readonly lbaShift: number;
  /** Size in blocks (NSZE). */
  readonly blocks: number;
  /** Bytes of the image as opened. */
  readonly bytes: number;
  private fdValue: number;

  constructor(
    /** 1-based namespace id. */
    readonly nsid: number,
    readonly disk: string,
    size: number | undefined,
    lbaSize: number,
    readonly readonly: boolean,
  ) {
    if (!(LBA_SIZES as readonly number[]).includes(lbaSize)) throw new RangeError(`lba size must be 512 or 4096, got ${lbaSize}`);
    this.lbaSize = lbaSize;
    this.lbaShift = Math.log2(lbaSize);
    const img = openImage('nvme', disk, size, readonly, lbaSize);
    this.fdValue = img.fd;
    this.bytes = img.size;
    this.blocks = Math.floor(img.size / lbaSize);
  }

  /** The image's fd, or -1 once closed. */
  get fd(): number {
    return this.fdValue;
  }

  /** True when [slba, slba+nlb) lies inside the namespace. */
  inRange(slba: number, nlb: number): boolean {
    return Number.isFinite(slba) && slba + nlb <= this.blocks;
  }

  close(): void {
    if (this.fdValue < 0) return;
    fs.closeSync(this.fdValue);
    this.fdValue = -1;
  }
}
