// A minimal cpio "newc" writer (the format the Linux kernel unpacks as an initramfs).
// Archives can be concatenated: the kernel unpacks them in order, later files win.

export type CpioEntry =
  | { type: 'file'; path: string; data: Buffer | string; mode?: number }
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; major: number; minor: number; mode?: number };

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const pad4 = (n: number) => (4 - (n % 4)) % 4;

function header(fields: number[], name: string): Buffer {
  const hex = fields.map((f) => (f >>> 0).toString(16).padStart(8, '0')).join('');
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const head = Buffer.from('070701' + hex, 'ascii');
  if (head.length !== 110) throw new Error('cpio: bad header field');
  return Buffer.concat([head, nameBytes, Buffer.alloc(pad4(head.length + nameBytes.length))]);
}

/** Builds one archive (with its TRAILER!!!) from `entries`; paths are relative to / ("bin/sh"). */
export function cpioArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const mtime = 0; // reproducible archives
  const add = (name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]) => {
    const clean = name.replace(/^\/+/, '');
    if (!clean || clean.split('/').some((c) => c === '..')) throw new Error(`cpio: bad path ${name}`);
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    const nlink = (mode & 0o170000) === S_IFDIR ? 2 : 1;
    parts.push(
      header(
        [ino++, mode, 0, 0, nlink, mtime, data.length, 0, 0, rdev[0], rdev[1], Buffer.byteLength(clean) + 1, 0],
        clean,
      ),
    );
    parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) {
    switch (e.type) {
      case 'file':
        add(e.path, S_IFREG | (e.mode ?? 0o644), typeof e.data === 'string' ? Buffer.from(e.data) : e.data);
        break;
      case 'dir':
        add(e.path, S_IFDIR | (e.mode ?? 0o755), Buffer.alloc(0));
        break;
      case 'symlink':
        add(e.path, S_IFLNK | 0o777, Buffer.from(e.target));
        break;
      case 'chardev':
        add(e.path, S_IFCHR | (e.mode ?? 0o600), Buffer.alloc(0), [e.major, e.minor]);
        break;
    }
  }
  parts.push(header([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 'TRAILER!!!'.length + 1, 0], 'TRAILER!!!'));
  return Buffer.concat(parts);
}

/**
 * Joins initramfs pieces (compressed or not) into one image. Each piece starts on a
 * 4-byte boundary, as the kernel requires of an uncompressed archive that follows
 * another piece (it skips the zero padding).
 */
export function concatInitramfs(pieces: readonly Buffer[]): Buffer {
  const out: Buffer[] = [];
  let len = 0;
  for (const p of pieces) {
    const pad = pad4(len);
    if (pad) out.push(Buffer.alloc(pad));
    out.push(p);
    len += pad + p.length;
  }
  return Buffer.concat(out);
}
