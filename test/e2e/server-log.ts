// The server's log during an e2e test: at VFIO_USER_TS_E2E_LOG's level (warn
// by default), its last lines kept for the failure report.
import { keepLogTail } from '../../server/log.js';

/** Keeps the last `max` lines of the server's log; `restore` at teardown. */
export function captureLog(max = 400): { lines: string[]; restore: () => void } {
  return keepLogTail(process.env.VFIO_USER_TS_E2E_LOG || 'warn', max);
}
