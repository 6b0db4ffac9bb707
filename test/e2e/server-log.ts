// The server of an e2e test: its log at VFIO_USER_TS_E2E_LOG's level (warn
// by default), the last lines kept for the failure report, and a temp dir
// that goes at teardown.
import type { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { keepLogTail } from '../../server/log.js';
import { startServer, type RunningServer, type ServerSpec } from '../../server/runtime.js';

/** Keeps the last `max` lines of the server's log; `restore` at teardown. */
export function captureLog(max = 400): { lines: string[]; restore: () => void } {
  return keepLogTail(process.env.VFIO_USER_TS_E2E_LOG || 'warn', max);
}

/** A server for one guest boot: its temp dir, the server and the tail of its log. */
export interface GuestServer {
  dir: string;
  rt: RunningServer;
  logLines: string[];
}

/**
 * Makes a temp dir (`prefix`), keeps the server's log, and starts the server
 * whose `spec` `setup(dir)` returns (with anything else the test needs from
 * it, e.g. the socket path); at teardown closes it, restores the log and
 * removes the dir, also when the test fails.
 */
export async function serveInTempDir<T extends { spec: ServerSpec }>(t: Test, prefix: string, setup: (dir: string) => T): Promise<GuestServer & T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const { lines: logLines, restore } = captureLog();
  let rt: RunningServer | null = null;
  t.teardown(async () => {
    await rt?.close();
    restore();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const made = setup(dir);
  rt = await startServer(made.spec);
  return { ...made, dir, rt, logLines };
}
