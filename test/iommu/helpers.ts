import { errnoName, VfioUserError } from '../../protocol/errno.js';
import { DmaFault } from '../../iommu/device-dma.js';

/** Run f; 'ok' or the errno name it failed with. */
export function errnoOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof VfioUserError) return errnoName(e.errno);
    throw e;
  }
}

export async function errnoOfAsync(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (e) {
    if (e instanceof VfioUserError) return errnoName(e.errno);
    throw e;
  }
}

export const PAGE = 4096;
export const RW = 3;

/** The DmaFault that `p` rejects with (anything else fails the test). */
export async function fault(p: Promise<unknown>): Promise<DmaFault> {
  try {
    await p;
  } catch (e) {
    if (e instanceof DmaFault) return e;
    throw e;
  }
  throw new Error('expected a DmaFault');
}
