import { errnoName, VfioUserError } from '../../protocol/errno.js';

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
