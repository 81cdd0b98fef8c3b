import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionExpiryWatch, TransferFault } from './faults.ts';

/** Thrown when an injected fault cuts the connection. */
export class InjectedDrop extends Error {
  readonly mode: 'reset' | 'close';
  readonly code: string;
  constructor(mode: 'reset' | 'close', code: string) {
    super(`injected connection ${mode}`);
    this.mode = mode;
    this.code = code;
  }
}

/** Thrown when an injected fault writes an HTTP 500 response into the body. */
export class InjectedHttp500 extends Error {
  readonly code: string;
  constructor(code: string) {
    super('injected HTTP 500 in body');
    this.code = code;
  }
}

/**
 * The byte-level faults one transfer claimed, applied to its body as it flows. The body is cut into
 * slices that end exactly at every fault offset, so "after N bytes" means exactly N bytes passed.
 */
export class ByteFaultPlan {
  readonly #stalls: { ms: number; afterBytes: number; done: boolean }[] = [];
  readonly #drop: Extract<TransferFault, { kind: 'drop-connection' }> | undefined;
  readonly #http500: Extract<TransferFault, { kind: 'http-500-in-body' }> | undefined;
  readonly #corruptions: { offset: number; xor: number }[] = [];
  readonly #bytesPerSecond: number | undefined;
  readonly #expiries: { watch: SessionExpiryWatch; done: boolean }[];
  readonly #expireSessions: () => void;
  readonly failAfterBody: { code: string; params: string[] } | undefined;
  readonly refuseStatus: number | undefined;
  #throttleStart = 0;
  #throttled = 0;

  constructor(
    faults: readonly TransferFault[],
    sessions: { expiries?: readonly SessionExpiryWatch[]; expireSessions?: () => void } = {},
  ) {
    this.#expiries = (sessions.expiries ?? []).map((watch) => ({ watch, done: false }));
    this.#expireSessions = sessions.expireSessions ?? (() => undefined);
    for (const fault of faults) {
      switch (fault.kind) {
        case 'stall':
          this.#stalls.push({ ms: fault.ms, afterBytes: fault.afterBytes ?? 0, done: false });
          break;
        case 'corrupt-byte':
          this.#corruptions.push({ offset: fault.offset, xor: fault.xor ?? 0xff });
          break;
        case 'throttle':
          this.#bytesPerSecond = Math.min(this.#bytesPerSecond ?? Infinity, fault.bytesPerSecond);
          break;
        case 'fail-task-after-body':
          this.failAfterBody = { code: fault.code, params: fault.params ?? [] };
          break;
        case 'refuse-transfer':
          this.refuseStatus = fault.status ?? 500;
          break;
      }
    }
    this.#drop = faults.find((fault) => fault.kind === 'drop-connection');
    this.#http500 = faults.find((fault) => fault.kind === 'http-500-in-body');
  }

  /** Cuts `chunk` (starting at body offset `position`) into slices that end at every fault offset. */
  *slices(chunk: Uint8Array, position: number): Generator<Uint8Array> {
    let offset = 0;
    const throttleSlice =
      this.#bytesPerSecond === undefined ? Infinity : Math.max(512, this.#bytesPerSecond / 20);
    while (offset < chunk.length) {
      const at = position + offset;
      const boundary = Math.min(this.#nextBoundary(at) - at, throttleSlice, chunk.length - offset);
      const slice = chunk.subarray(offset, offset + boundary);
      offset += slice.length;
      yield this.#corrupt(slice, at);
    }
  }

  /**
   * Call before moving bytes at `position` (and once at the end): expires sessions, stalls, cuts, or
   * writes the 500.
   */
  async checkpoint(position: number, signal: AbortSignal): Promise<void> {
    for (const expiry of this.#expiries) {
      if (!expiry.done && position >= expiry.watch.afterBytes) {
        expiry.done = true;
        if (expiry.watch.fire()) this.#expireSessions();
      }
    }
    for (const stall of this.#stalls) {
      if (!stall.done && position >= stall.afterBytes) {
        stall.done = true;
        await sleep(stall.ms, undefined, { signal }).catch(() => undefined);
      }
    }
    if (this.#drop !== undefined && position >= this.#drop.afterBytes) {
      throw new InjectedDrop(this.#drop.mode ?? 'reset', this.#drop.code ?? 'VDI_IO_ERROR');
    }
    if (this.#http500 !== undefined && position >= this.#http500.afterBytes) {
      throw new InjectedHttp500(this.#http500.code ?? 'INTERNAL_ERROR');
    }
  }

  /** Sleeps as needed so that `moved` more bytes keep the transfer under the throttle rate. */
  async throttle(moved: number, signal: AbortSignal): Promise<void> {
    if (this.#bytesPerSecond === undefined) return;
    if (this.#throttleStart === 0) this.#throttleStart = performance.now();
    this.#throttled += moved;
    const due = this.#throttleStart + (this.#throttled / this.#bytesPerSecond) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait, undefined, { signal }).catch(() => undefined);
  }

  #nextBoundary(position: number): number {
    let next = Infinity;
    const consider = (offset: number | undefined): void => {
      if (offset !== undefined && offset > position && offset < next) next = offset;
    };
    for (const stall of this.#stalls) if (!stall.done) consider(stall.afterBytes);
    for (const expiry of this.#expiries) if (!expiry.done) consider(expiry.watch.afterBytes);
    consider(this.#drop?.afterBytes);
    consider(this.#http500?.afterBytes);
    return next;
  }

  #corrupt(slice: Uint8Array, position: number): Uint8Array {
    const hits = this.#corruptions.filter((c) => c.offset >= position && c.offset < position + slice.length);
    if (hits.length === 0) return slice;
    const copy = new Uint8Array(slice);
    for (const hit of hits) copy[hit.offset - position]! ^= hit.xor;
    return copy;
  }
}
