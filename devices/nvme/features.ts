// Get/Set Features state (Base 5.15, 5.27): arbitration, power management,
// temperature threshold, error recovery, volatile write cache, number of
// queues, interrupt coalescing, interrupt vector configuration, write
// atomicity, asynchronous event configuration and the timestamp. Nothing is
// saveable; a controller reset returns every feature to its default.
import { Fid, S } from './constants.js';
import { fail } from './errors.js';

/** Get Features SEL (CDW10 bits 10:8). */
const SEL_CURRENT = 0;
const SEL_SAVED = 2;
const SEL_CAPABILITIES = 3;
/** Supported capabilities: changeable (bit 2). */
const CAP_CHANGEABLE = 1 << 2;

const TIMESTAMP_MAX = 2 ** 48;

/** One feature's current value (CDW11 / completion dword 0). */
export interface FeatureState {
  arbitration: number;
  powerManagement: number;
  temperatureThreshold: number;
  errorRecovery: number;
  volatileWriteCache: number;
  coalescing: number;
  writeAtomicity: number;
  asyncEventConfig: number;
}

const DEFAULTS: FeatureState = {
  arbitration: 0,
  powerManagement: 0,
  temperatureThreshold: 0x157, // 343 K
  errorRecovery: 0,
  volatileWriteCache: 1,
  coalescing: 0,
  writeAtomicity: 0,
  asyncEventConfig: 0,
};

const SIMPLE: Record<number, keyof FeatureState> = {
  [Fid.ARBITRATION]: 'arbitration',
  [Fid.POWER_MANAGEMENT]: 'powerManagement',
  [Fid.TEMPERATURE_THRESHOLD]: 'temperatureThreshold',
  [Fid.ERROR_RECOVERY]: 'errorRecovery',
  [Fid.VOLATILE_WRITE_CACHE]: 'volatileWriteCache',
  [Fid.INTERRUPT_COALESCING]: 'coalescing',
  [Fid.WRITE_ATOMICITY]: 'writeAtomicity',
  [Fid.ASYNC_EVENT_CONFIG]: 'asyncEventConfig',
};

export class Features {
  state: FeatureState = { ...DEFAULTS };
  /** I/O queues granted by Set Features Number of Queues (0 until set). */
  grantedQueues = 0;
  /** Interrupt Vector Configuration: vectors with coalescing disabled. */
  readonly coalescingDisabled = new Set<number>();
  private timestampBase = 0;
  private timestampSetAt = 0;
  private timestampSynced = false;

  constructor(
    /** I/O queue pairs the controller has. */
    private readonly maxQueues: number,
    /** MSI-X vectors (interrupt vector configuration checks against it). */
    private readonly vectors: number,
    /** Wall clock in ms (one place, so a deterministic clock can replace it). */
    private readonly clock: () => number,
  ) {}

  reset(): void {
    this.state = { ...DEFAULTS };
    this.grantedQueues = 0;
    this.coalescingDisabled.clear();
    this.timestampSynced = false;
  }

  /** Whether the Timestamp feature is `fid` (it moves data, the others do not). */
  static movesData(fid: number): boolean {
    return fid === Fid.TIMESTAMP;
  }

  /** Get Features: completion dword 0, plus the data of the timestamp. */
  get(fid: number, cdw11: number, sel: number): { dw0: number; data?: Buffer } {
    if (sel > SEL_CAPABILITIES) fail(S.INVALID_FIELD, `SEL ${sel}`);
    const current = sel === SEL_CURRENT;
    const key = SIMPLE[fid];
    if (sel === SEL_CAPABILITIES) {
      if (key === undefined && fid !== Fid.NUMBER_OF_QUEUES && fid !== Fid.INTERRUPT_VECTOR_CONFIG && fid !== Fid.TIMESTAMP) {
        fail(S.INVALID_FIELD, `feature 0x${fid.toString(16)}`);
      }
      return { dw0: CAP_CHANGEABLE };
    }
    if (key !== undefined) return { dw0: current ? this.state[key] : DEFAULTS[key] };
    switch (fid) {
      case Fid.NUMBER_OF_QUEUES: {
        const n = (current || sel === SEL_SAVED) && this.grantedQueues ? this.grantedQueues : this.maxQueues;
        return { dw0: ((n - 1) << 16) | (n - 1) };
      }
      case Fid.INTERRUPT_VECTOR_CONFIG: {
        const iv = cdw11 & 0xffff;
        if (iv >= this.vectors) fail(S.INVALID_FIELD, `interrupt vector ${iv}`);
        return { dw0: iv | (current && this.coalescingDisabled.has(iv) ? 1 << 16 : 0) };
      }
      case Fid.TIMESTAMP:
        return { dw0: 0, data: this.timestamp() };
      default:
        fail(S.INVALID_FIELD, `feature 0x${fid.toString(16)}`);
    }
  }

  /** Set Features: completion dword 0. `data` is the timestamp's 8 bytes. */
  set(fid: number, cdw11: number, data?: Buffer): number {
    switch (fid) {
      case Fid.POWER_MANAGEMENT:
        if ((cdw11 & 0x1f) !== 0) fail(S.INVALID_FIELD, `power state ${cdw11 & 0x1f} (only 0 exists)`);
        this.state.powerManagement = cdw11 & 0xff;
        return 0;
      case Fid.VOLATILE_WRITE_CACHE:
        this.state.volatileWriteCache = cdw11 & 1;
        return 0;
      case Fid.NUMBER_OF_QUEUES: {
        const nsq = cdw11 & 0xffff;
        const ncq = cdw11 >>> 16;
        if (nsq === 0xffff || ncq === 0xffff) fail(S.INVALID_FIELD, 'number of queues 65536');
        // Granted once per controller reset; the answer is what we have.
        if (!this.grantedQueues) this.grantedQueues = Math.min(Math.max(nsq, ncq) + 1, this.maxQueues);
        const n = this.grantedQueues;
        return ((n - 1) << 16) | (n - 1);
      }
      case Fid.INTERRUPT_VECTOR_CONFIG: {
        const iv = cdw11 & 0xffff;
        if (iv >= this.vectors) fail(S.INVALID_FIELD, `interrupt vector ${iv}`);
        if (cdw11 & (1 << 16)) this.coalescingDisabled.add(iv);
        else this.coalescingDisabled.delete(iv);
        return 0;
      }
      case Fid.TIMESTAMP: {
        const ms = data!.readUIntLE(0, 6);
        if (ms >= TIMESTAMP_MAX) fail(S.INVALID_FIELD, 'timestamp');
        this.timestampBase = ms;
        this.timestampSetAt = this.clock();
        this.timestampSynced = true;
        return 0;
      }
      default: {
        const key = SIMPLE[fid];
        if (key === undefined) fail(S.INVALID_FIELD, `feature 0x${fid.toString(16)}`);
        this.state[key] = cdw11 >>> 0;
        return 0;
      }
    }
  }

  /** The Timestamp data structure: ms since the epoch (48 bits), origin and synch attributes. */
  private timestamp(): Buffer {
    const now = this.clock();
    const b = Buffer.alloc(8);
    const ms = this.timestampSynced ? this.timestampBase + (now - this.timestampSetAt) : now;
    b.writeUIntLE(Math.max(0, Math.floor(ms)) % TIMESTAMP_MAX, 0, 6);
    // Origin 1: set by the host (else 0: reset); the timestamp keeps counting (Synch 0).
    b[6] = this.timestampSynced ? 1 << 1 : 0;
    return b;
  }

  /** Interrupt coalescing for `vector`: threshold (entries) and time (µs), or undefined when off. */
  coalescingFor(vector: number): { threshold: number; timeUs: number } | undefined {
    const v = this.state.coalescing;
    const timeUs = ((v >>> 8) & 0xff) * 100;
    if (timeUs === 0 || this.coalescingDisabled.has(vector)) return undefined;
    return { threshold: (v & 0xff) + 1, timeUs };
  }
}
