// A listening UNIX socket for one device. Takes over a stale socket file left
// by a dead process, refuses a live one, creates the socket mode 0600, and
// hands out one connection at a time: while a client is active the listener
// stops accepting, so the next client waits in the backlog until it is done.
import fs from 'node:fs';
import * as native from '../native/index.js';
import type { Log } from './log.js';

export class SocketInUseError extends Error {}

export class Listener {
  private fd: number;
  private watcher: native.Watcher | null;
  private paused = false;
  private closed = false;

  private constructor(readonly path: string, fd: number, private readonly onConnection: (fd: number) => void, private readonly log: Log) {
    this.fd = fd;
    this.watcher = native.watch(fd, native.READABLE, (status) => this.onReadable(status));
  }

  static open(path: string, onConnection: (fd: number) => void, log: Log): Listener {
    clearStaleSocket(path);
    // umask-independent 0600: nobody else may drive our device.
    const oldMask = process.umask(0o177);
    let fd: number;
    try {
      fd = native.listenUnix(path, 16);
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(path, 0o600);
    log.info(`listening on ${path}`);
    return new Listener(path, fd, onConnection, log);
  }

  /** Stop accepting until resume() (a client is active). */
  pause(): void {
    if (this.paused || this.closed || !this.watcher) return;
    this.paused = true;
    native.watchSet(this.watcher, 0);
  }

  resume(): void {
    if (!this.paused || this.closed || !this.watcher) return;
    this.paused = false;
    native.watchSet(this.watcher, native.READABLE);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watcher) native.watchClose(this.watcher);
    this.watcher = null;
    native.close(this.fd);
    try { fs.unlinkSync(this.path); } catch { /* already gone */ }
  }

  private onReadable(status: number): void {
    if (this.closed || this.paused) return;
    if (status < 0) { this.log.error(`listener poll error ${status}`); return; }
    const fd = native.accept(this.fd);
    if (fd === -native.EAGAIN) return;
    if (fd < 0) { this.log.warn(`accept failed: errno ${-fd}`); return; }
    this.onConnection(fd);
  }
}

/** Remove `path` if it is a socket nobody listens on; refuse anything else. */
export function clearStaleSocket(path: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket; refusing to replace it`);
  let probe = -1;
  try {
    probe = native.connectUnix(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      fs.unlinkSync(path); // left behind by a dead process
      return;
    }
    throw err;
  }
  native.close(probe);
  throw new SocketInUseError(`${path} is in use by a live server; stop it first or pick another --socket`);
}
