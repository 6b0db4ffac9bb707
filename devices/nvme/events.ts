// Asynchronous Event Requests (Base 5.2): the host leaves up to AER_LIMIT of
// them outstanding; an event completes the oldest with its type, information
// and log page. Events that find no request wait (at most a few kinds).
import { AER_LIMIT, S, type Status } from './constants.js';
import { fail } from './errors.js';

interface Waiter {
  resolve(status: Status): void;
  setResult(dw0: number): void;
}

const MAX_QUEUED_EVENTS = 16;

export class AsyncEvents {
  private readonly waiters: Waiter[] = [];
  private readonly queued: number[] = [];

  /** An Asynchronous Event Request: completes when an event comes (or the controller resets). */
  request(setResult: (dw0: number) => void): Promise<Status> {
    if (this.waiters.length >= AER_LIMIT) fail(S.AER_LIMIT_EXCEEDED, `more than ${AER_LIMIT} requests outstanding`);
    const ev = this.queued.shift();
    if (ev !== undefined) {
      setResult(ev);
      return Promise.resolve(S.SUCCESS);
    }
    return new Promise<Status>((resolve) => this.waiters.push({ resolve, setResult }));
  }

  /** Report an event (type bits 2:0, information 15:8, log page 23:16). */
  post(type: number, info: number, logPage: number): void {
    const dw0 = (type & 7) | ((info & 0xff) << 8) | ((logPage & 0xff) << 16);
    const w = this.waiters.shift();
    if (w) {
      w.setResult(dw0);
      w.resolve(S.SUCCESS);
    } else if (this.queued.length < MAX_QUEUED_EVENTS && !this.queued.includes(dw0)) {
      this.queued.push(dw0);
    }
  }

  /** Outstanding requests. */
  get outstanding(): number {
    return this.waiters.length;
  }

  /** Controller reset: requests end (their completions are dropped), events are forgotten. */
  reset(): void {
    for (const w of this.waiters.splice(0)) w.resolve(S.ABORTED_BY_REQUEST);
    this.queued.length = 0;
  }
}
