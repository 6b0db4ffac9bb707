// A `vfio-user-ts serve` child process for tests: started, then awaited
// until it says it is serving (or rejected if it exits first).
import { spawn } from 'node:child_process';

/** A running serve child: its stderr so far, and its exit code once it exits. */
export interface ServeChild {
  kill(signal: NodeJS.Signals): void;
  readonly exited: Promise<number | null>;
  stderr(): string;
  readonly exitCode: number | null;
}

/** Spawns `cmd args` in `cwd` and resolves once its stderr says "serving". */
export async function startServeChild(cmd: string, args: string[], cwd: string): Promise<ServeChild> {
  const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (stderr.includes('serving')) resolve();
    });
    child.on('exit', () => reject(new Error(`serve exited: ${stderr}`)));
  });
  return {
    kill: (signal) => { child.kill(signal); },
    exited,
    stderr: () => stderr,
    get exitCode() { return child.exitCode; },
  };
}
