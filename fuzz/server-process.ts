// The server under fuzz as a child process: start it on a socket in a temp
// dir, read its RSS and fd count from /proc, notice when it dies, and keep
// the errors it logs (a handler that threw instead of refusing cleanly).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** How the child ended, when it did. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const TARGET = path.join(path.dirname(fileURLToPath(import.meta.url)), 'target.js');
/** Lines of stderr kept for the report. */
const STDERR_KEEP = 40;
/** VFIO_USER_TS_FUZZ_STDERR=<file>: the server's whole stderr is appended there too (with VFIO_USER_TS_FUZZ_LOG_LEVEL=debug, a trace of a run). */
const STDERR_COPY = process.env.VFIO_USER_TS_FUZZ_STDERR;
const READY_TIMEOUT_MS = 20_000;
/** server/log.ts's format: "<time> error [scope] message". */
const ERROR_LINE = /^\S+ error +\[/;
const ERROR_SAMPLES = 10;
/** USER_HZ, as /proc reports times in it (100 on Linux everywhere). */
const CLOCK_TICKS = 100;

/** One running server child. */
export class ServerProcess {
  readonly socket: string;
  exit: ExitInfo | null = null;
  /** Last lines of the child's stderr. */
  readonly stderrTail: string[] = [];
  /** Lines logged at level error: a handler or device threw instead of refusing cleanly. */
  loggedErrors = 0;
  /** The first few of them. */
  readonly errorSamples: string[] = [];
  private readonly child: ChildProcess;
  private exited: Promise<ExitInfo>;
  private partial = '';

  private constructor(readonly kind: string, readonly dir: string) {
    this.socket = path.join(dir, `${kind}.sock`);
    const args = [TARGET, kind, this.socket, path.join(dir, 'disk.img')];
    // The plain server: env(1) drops the NODE_OPTIONS a test runner adds to
    // every node it spawns (tap's process tracking would inflate fds and RSS);
    // it execs node, so the pid is the server's.
    this.child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    if (STDERR_COPY) this.child.stderr!.pipe(fs.createWriteStream(STDERR_COPY, { flags: 'a' }));
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (s: string) => this.onStderr(s));
  }

  /** Starts a child and waits until its socket listens. */
  static async start(kind: string, dir: string): Promise<ServerProcess> {
    const p = new ServerProcess(kind, dir);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fuzz target did not start')), READY_TIMEOUT_MS);
      let out = '';
      p.child.stdout!.setEncoding('utf8');
      p.child.stdout!.on('data', (s: string) => {
        out += s;
        if (out.includes('ready\n')) { clearTimeout(timer); resolve(); }
      });
      void p.exited.then((e) => {
        clearTimeout(timer);
        reject(new Error(`fuzz target exited at start (code ${e.code}, signal ${e.signal}): ${p.stderrTail.join('\n')}`));
      });
    });
    return p;
  }

  get pid(): number { return this.child.pid!; }
  get alive(): boolean { return this.exit === null; }

  /** VmRSS in bytes (0 once gone). */
  rss(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${this.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : 0;
    } catch {
      return 0;
    }
  }

  /** CPU time used so far in seconds (user + system), -1 once gone. */
  cpuSeconds(): number {
    try {
      // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
      const stat = fs.readFileSync(`/proc/${this.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
    } catch {
      return -1;
    }
  }

  /** Open fds of the child (-1 once gone). */
  fdCount(): number {
    try {
      return fs.readdirSync(`/proc/${this.pid}/fd`).length;
    } catch {
      return -1;
    }
  }

  /** SIGTERM, then SIGKILL if it lingers; resolves with how it ended. */
  async stop(): Promise<ExitInfo> {
    if (this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const e = await this.exited;
    clearTimeout(timer);
    return e;
  }

  /** Resolves when the child exits. */
  waitExit(): Promise<ExitInfo> { return this.exited; }

  private onStderr(s: string): void {
    const lines = (this.partial + s).split('\n');
    this.partial = lines.pop()!;
    for (const line of lines) {
      if (ERROR_LINE.test(line)) {
        this.loggedErrors++;
        if (this.errorSamples.length < ERROR_SAMPLES) this.errorSamples.push(line);
      }
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_KEEP) this.stderrTail.shift();
    }
  }
}
