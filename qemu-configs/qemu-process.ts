// Running one QEMU process: serial console lines from stdout, stderr kept, a hard
// timeout, and no QEMU outliving us (timeout, abort, our exit, or our death).
import { spawn, type ChildProcess } from 'node:child_process';
import { qemuSpawn, type QemuCommand } from './qemu-command.js';
import { dieWithParent } from './exec.js';

export interface QemuRunOptions {
  qemu: QemuCommand;
  args: readonly string[];
  timeoutMs: number;
  /** Each serial console line, without its line ending, as it arrives. */
  onLine?: (line: string) => void;
  /** Stop QEMU as soon as its stderr matches (e.g. a KVM internal error). */
  killOnStderr?: RegExp;
  signal?: AbortSignal;
}

export interface QemuRunResult {
  /** The serial console output, line endings normalised to \n. */
  output: string;
  lines: string[];
  stderr: string;
  /** QEMU's exit code (0 after a guest poweroff), null if it was killed. */
  qemuExitCode: number | null;
  qemuSignal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Stopped because stderr matched `killOnStderr`, or because of `signal`. */
  killed: boolean;
  durationMs: number;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

export function runQemu(o: QemuRunOptions): Promise<QemuRunResult> {
  installExitHook();
  const spec = qemuSpawn(o.qemu, o.args);
  const [file, args] = dieWithParent(spec.file, spec.args, 'KILL');
  const started = Date.now();
  const child = spawn(file, args, { env: spec.env, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);

  return new Promise((resolve, reject) => {
    const lines: string[] = [];
    let partial = '';
    let stderr = '';
    let timedOut = false;
    let killed = false;
    const stop = () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, o.timeoutMs);
    const onAbort = () => {
      killed = true;
      stop();
    };
    o.signal?.addEventListener('abort', onAbort, { once: true });
    if (o.signal?.aborted) onAbort();

    const emit = (line: string) => {
      lines.push(line);
      try {
        o.onLine?.(line);
      } catch {
        /* a callback's error must not leave QEMU running */
      }
    };
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      partial += chunk;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        emit(partial.slice(0, nl).replace(/\r+$/, ''));
        partial = partial.slice(nl + 1);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      if (o.killOnStderr?.test(stderr) && !killed) {
        killed = true;
        stop();
      }
    });
    child.stdin!.on('error', () => {}); // QEMU may exit before reading it
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, sig) => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      live.delete(child);
      if (partial) emit(partial.replace(/\r+$/, ''));
      resolve({
        output: lines.join('\n') + (lines.length ? '\n' : ''),
        lines,
        stderr,
        qemuExitCode: code,
        qemuSignal: sig,
        timedOut,
        killed,
        durationMs: Date.now() - started,
      });
    });
  });
}
