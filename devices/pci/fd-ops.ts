// The only two things the PCI layer does with file descriptors: signal an
// eventfd and close one it owns. Injectable so unit tests run without the
// native addon; the default loads it lazily (and only if it is built).

export interface FdOps {
  /** Add 1 to an eventfd. Returns 0 or -errno (never throws for a bad fd). */
  signal(fd: number): number;
  /** Close an fd the device owns. Returns 0 or -errno. */
  close(fd: number): number;
}

type NativeFds = Pick<typeof import('../../native/index.js'), 'eventfdWrite' | 'close'>;

let native: NativeFds | undefined;
let nativeError: unknown;
try {
  // Loaded dynamically: an addon that is not built must not break modules
  // (and unit tests) that never signal a real fd.
  native = await import('../../native/index.js');
} catch (e) {
  nativeError = e;
}

function requireNative(): NativeFds {
  if (!native || typeof native.eventfdWrite !== 'function') {
    throw new Error(`native addon unavailable: ${String(nativeError ?? 'no eventfdWrite export')}`);
  }
  return native;
}

/** FdOps backed by the native addon (throws on first use if it is missing). */
export const nativeFdOps: FdOps = {
  signal: (fd) => requireNative().eventfdWrite(fd, 1),
  close: (fd) => requireNative().close(fd),
};
