// Vendor-specific capability: ID, next, total length, then opaque bytes (RO).
import type { ConfigSpace } from '../config-space.js';
import { Vndr } from '../regs.js';

export function vendorCapSize(data: Uint8Array): number {
  const size = Vndr.DATA + data.length;
  if (size > 0xff) throw new RangeError(`vendor capability too long (${size} bytes)`);
  return size;
}

export function buildVendorCap(cfg: ConfigSpace, offset: number, data: Uint8Array): void {
  cfg.set8(offset + Vndr.LEN, vendorCapSize(data));
  cfg.bytes.set(data, offset + Vndr.DATA);
}
