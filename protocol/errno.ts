// Linux errno values used on the wire (the `error` field of a vfio-user reply)
// and by the IOMMU model's operations.
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  ENOSYS: 38,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
} as const;

export type ErrnoName = keyof typeof Errno;

const names = new Map<number, string>(
  Object.entries(Errno).map(([k, v]) => [v, k]),
);

export function errnoName(errno: number): string {
  return names.get(errno) ?? `errno ${errno}`;
}

/**
 * An error that maps to one errno. Thrown by codecs, the session, devices and
 * the IOMMU model; the session turns it into an error reply (never a crash).
 */
export class VfioUserError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(`${errnoName(errno)}: ${message}`);
    this.name = 'VfioUserError';
    this.errno = errno;
  }
}

/** Shorthand: `throw fail('EINVAL', 'argsz too small')`. */
export function fail(name: ErrnoName, message: string): VfioUserError {
  return new VfioUserError(Errno[name], message);
}
