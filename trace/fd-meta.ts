// What a recorded fd is: kind, size and seals, plus its file identity, so a
// replay can stand a fresh memfd of the same size (and seals) in for it and
// use one memfd wherever the recording used one file.
import fs from 'node:fs';
import * as native from '../native/index.js';
import type { FdMeta } from './format.js';

/** Describes `fd` without changing it; an fd that cannot be examined is kind 'unknown'. */
export function describeFd(fd: number): FdMeta {
  let link = '';
  try {
    link = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    // no /proc: the kind comes from fstat alone
  }
  try {
    const st = native.fileStat(fd);
    return { kind: kindOf(link), size: st.size, seals: native.getSeals(fd), id: `${st.dev}:${st.ino}` };
  } catch {
    return { kind: 'unknown', size: 0, seals: 0, id: '' };
  }
}

/** The kind from the /proc/self/fd link: "/memfd:name (deleted)", "anon_inode:[eventfd]", a path, ... */
function kindOf(link: string): string {
  if (link.startsWith('/memfd:')) return 'memfd';
  if (link === 'anon_inode:[eventfd]') return 'eventfd';
  if (link.startsWith('anon_inode:')) return 'anon';
  if (link.startsWith('socket:')) return 'socket';
  if (link.startsWith('pipe:')) return 'pipe';
  if (link.startsWith('/')) return 'file';
  return 'other';
}
