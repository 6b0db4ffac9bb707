// Raw image files for block devices: open (or create at a given size) and
// check that the file is usable before a device model takes its fd.
import fs from 'node:fs';

/** An open raw image: its fd and size in bytes (as opened). */
export interface OpenImage {
  fd: number;
  size: number;
}

/**
 * Open `disk` read-write (read-only when `readonly`), or create it at `size`
 * bytes when it does not exist. `unit` is the smallest block the device can
 * address: the size must be a multiple of it and the file at least one unit.
 * `who` prefixes the error messages (the device kind).
 */
export function openImage(who: string, disk: string, size: number | undefined, readonly: boolean, unit: number): OpenImage {
  if (size !== undefined && (!Number.isSafeInteger(size) || size < unit || size % unit !== 0)) {
    throw new RangeError(`size must be a positive multiple of ${unit} bytes, got ${size}`);
  }
  let fd: number;
  try {
    fd = fs.openSync(disk, readonly ? 'r' : 'r+');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || size === undefined || readonly) {
      const hint = (e as NodeJS.ErrnoException).code === 'ENOENT' ? (readonly ? ' (a read-only disk must exist)' : ' (give a size to create it)') : '';
      throw new Error(`${who}: cannot open ${disk}: ${(e as Error).message}${hint}`);
    }
    fd = fs.openSync(disk, 'wx+', 0o644);
    try {
      fs.ftruncateSync(fd, size);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }
  const st = fs.fstatSync(fd);
  if (!st.isFile()) {
    fs.closeSync(fd);
    throw new Error(`${who}: ${disk} is not a regular file`);
  }
  if (st.size < unit) {
    fs.closeSync(fd);
    throw new Error(`${who}: ${disk} is smaller than one block of ${unit} bytes (${st.size} bytes)`);
  }
  return { fd, size: st.size };
}
