// The server under fuzz, run as a child process so that a crash is seen as an
// exit code or signal and its RSS and fds can be read from /proc:
//   node dist/fuzz/target.js <kind> <socket> [<disk image>]
// Prints "ready" on stdout once the socket listens; log lines (level
// VFIO_USER_TS_FUZZ_LOG_LEVEL, default error) go to stderr;
// exits when its stdin (held by the fuzzer) closes.
import { startServer } from '../server/runtime.js';

/** The blk image size: small, so random sectors often land inside it. */
export const FUZZ_DISK_SIZE = 4 * 1024 * 1024;

async function main(): Promise<void> {
  const [kind, socket, disk] = process.argv.slice(2);
  if (!kind || !socket) throw new Error('usage: target.js <kind> <socket> [<disk image>]');
  const options: Record<string, unknown> = kind === 'blk' ? { disk, size: FUZZ_DISK_SIZE } : {};
  const logLevel = process.env.VFIO_USER_TS_FUZZ_LOG_LEVEL ?? 'error';
  const rt = await startServer({ devices: [{ name: `${kind}0`, kind, socket, options }], logLevel });
  process.on('SIGTERM', () => {
    void rt.close().finally(() => process.exit(0));
  });
  // The fuzzer holds our stdin open: when it goes away, so do we (no orphaned servers).
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
  process.stdout.write('ready\n');
}

if (process.argv[1]?.endsWith('target.js')) {
  main().catch((err) => {
    process.stderr.write(`fuzz target: ${(err as Error).stack ?? err}\n`);
    process.exit(3);
  });
}
