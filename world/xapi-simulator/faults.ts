/**
 * Faults a test (or a `main.ts` flag) injects. Each is armed until it has fired `times` times (default:
 * forever). Transfer faults apply to exports and imports unless `on` narrows them, and to every VDI
 * unless `vdiUuid` does (that VDI and its snapshots); a transfer claims (and uses up one `times` of) each matching fault when it starts,
 * except `expire-sessions`, which every matching transfer watches and which is used up only when it fires.
 * Byte offsets count body bytes only: the export body sent, or the import body received. They are counted
 * here, where the bytes flow, so a test needs no hook into the code under test (which may run in another
 * thread or process).
 */
export type Fault =
  /**
   * Any RPC method fails with `code` (e.g. login → SESSION_AUTHENTICATION_FAILED, VDI.snapshot → SR_FULL),
   * after the first `skip` calls of it (default 0) went through.
   */
  | { kind: 'rpc-error'; method: string; code: string; params?: string[]; times?: number; skip?: number }
  /** The transfer is refused before its 200 with a plain HTTP error response; the caller's task is untouched. */
  | (TransferScope & { kind: 'refuse-transfer'; status?: number })
  /** The connection is cut after `afterBytes` body bytes (TCP reset, or a clean FIN with `mode: 'close'`). */
  | (TransferScope & { kind: 'drop-connection'; afterBytes: number; mode?: 'reset' | 'close'; code?: string })
  /** Nothing moves for `ms` once `afterBytes` body bytes have passed. */
  | (TransferScope & { kind: 'stall'; ms: number; afterBytes?: number })
  /** The body completes, then the task fails with `code` (e.g. VDI_IO_ERROR). */
  | (TransferScope & { kind: 'fail-task-after-body'; code: string; params?: string[] })
  /** The body byte at `offset` is XORed with `xor` (default 0xff) in flight. */
  | (TransferScope & { kind: 'corrupt-byte'; offset: number; xor?: number })
  /** After `afterBytes` body bytes a whole `HTTP/1.1 500` response is written into the body; the task fails. */
  | (TransferScope & { kind: 'http-500-in-body'; afterBytes: number; code?: string })
  /** Body bytes move at no more than `bytesPerSecond`. */
  | (TransferScope & { kind: 'throttle'; bytesPerSecond: number })
  /**
   * Once `afterBytes` body bytes of a transfer have passed, every session of the pool expires (as
   * `sim.expireSessions()`): later calls with them fail SESSION_INVALID, transfers 401. The transfer
   * itself, authenticated already, goes on. Fires at most `times` times, over all transfers.
   */
  | (TransferScope & { kind: 'expire-sessions'; afterBytes: number });

export interface TransferScope {
  on?: 'export' | 'import';
  vdiUuid?: string;
  times?: number;
}

export type TransferFault = Exclude<Fault, { kind: 'rpc-error' | 'expire-sessions' }>;

/** An `expire-sessions` fault as one transfer watches it: `fire()` is false once it is used up. */
export interface SessionExpiryWatch {
  readonly afterBytes: number;
  fire(): boolean;
}

export interface FaultHandle {
  /** Disarms the fault (no effect on a transfer that already claimed it). */
  remove(): void;
  /** How many times it has fired so far. */
  readonly fired: number;
}

interface Armed {
  fault: Fault;
  remaining: number;
  fired: number;
  /** Calls let through so far (an rpc-error's `skip`). */
  skipped: number;
}

export class FaultRegistry {
  #armed: Armed[] = [];

  inject(fault: Fault): FaultHandle {
    validateFault(fault);
    const armed: Armed = { fault, remaining: fault.times ?? Number.POSITIVE_INFINITY, fired: 0, skipped: 0 };
    this.#armed.push(armed);
    return {
      remove: () => {
        this.#armed = this.#armed.filter((entry) => entry !== armed);
      },
      get fired() {
        return armed.fired;
      },
    };
  }

  clear(): void {
    this.#armed = [];
  }

  /** The rpc-error armed for `method`, used up by this call. */
  takeRpcError(method: string): { code: string; params: string[] } | undefined {
    const entry = this.#armed.find(
      (armed) => armed.fault.kind === 'rpc-error' && armed.fault.method === method,
    );
    if (entry === undefined || entry.fault.kind !== 'rpc-error') return undefined;
    if (entry.skipped < (entry.fault.skip ?? 0)) {
      entry.skipped += 1;
      return undefined;
    }
    this.#use(entry);
    return { code: entry.fault.code, params: entry.fault.params ?? [] };
  }

  /** Every transfer fault matching this transfer, used up once each. */
  claimTransferFaults(direction: 'export' | 'import', vdiUuids: readonly string[]): TransferFault[] {
    const claimed: TransferFault[] = [];
    for (const entry of [...this.#armed]) {
      const fault = entry.fault;
      if (fault.kind === 'rpc-error' || fault.kind === 'expire-sessions') continue;
      if (fault.on !== undefined && fault.on !== direction) continue;
      if (fault.vdiUuid !== undefined && !vdiUuids.includes(fault.vdiUuid)) continue;
      this.#use(entry);
      claimed.push(fault);
    }
    return claimed;
  }

  /** The `expire-sessions` faults matching this transfer; each is used up when (and if) it fires. */
  watchSessionExpiries(direction: 'export' | 'import', vdiUuids: readonly string[]): SessionExpiryWatch[] {
    const watches: SessionExpiryWatch[] = [];
    for (const entry of this.#armed) {
      const fault = entry.fault;
      if (fault.kind !== 'expire-sessions') continue;
      if (fault.on !== undefined && fault.on !== direction) continue;
      if (fault.vdiUuid !== undefined && !vdiUuids.includes(fault.vdiUuid)) continue;
      watches.push({
        afterBytes: fault.afterBytes,
        fire: () => {
          if (entry.remaining <= 0 || !this.#armed.includes(entry)) return false;
          this.#use(entry);
          return true;
        },
      });
    }
    return watches;
  }

  #use(entry: Armed): void {
    entry.fired += 1;
    entry.remaining -= 1;
    if (entry.remaining <= 0) this.#armed = this.#armed.filter((armed) => armed !== entry);
  }
}

const KINDS = new Set([
  'rpc-error',
  'refuse-transfer',
  'drop-connection',
  'stall',
  'fail-task-after-body',
  'corrupt-byte',
  'http-500-in-body',
  'throttle',
  'expire-sessions',
]);

function validateFault(fault: Fault): void {
  // Faults also arrive as JSON from main.ts flags: check what the type system cannot.
  if (!KINDS.has(fault.kind)) throw new RangeError(`unknown fault kind ${String(fault.kind)}`);
  if (fault.kind === 'rpc-error' && (typeof fault.method !== 'string' || typeof fault.code !== 'string')) {
    throw new RangeError('fault rpc-error needs a method and a code');
  }
  if (fault.kind === 'fail-task-after-body' && typeof fault.code !== 'string') {
    throw new RangeError('fault fail-task-after-body needs a code');
  }
  const nonNegative = (name: string, value: number | undefined): void => {
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new RangeError(`fault ${fault.kind}: ${name} must be a non-negative number, got ${value}`);
    }
  };
  nonNegative('times', fault.times);
  if (fault.kind === 'rpc-error') nonNegative('skip', fault.skip);
  switch (fault.kind) {
    case 'drop-connection':
    case 'http-500-in-body':
      return nonNegative('afterBytes', fault.afterBytes);
    case 'expire-sessions':
      if (typeof fault.afterBytes !== 'number')
        throw new RangeError('fault expire-sessions needs afterBytes');
      return nonNegative('afterBytes', fault.afterBytes);
    case 'stall':
      nonNegative('afterBytes', fault.afterBytes);
      return nonNegative('ms', fault.ms);
    case 'corrupt-byte':
      return nonNegative('offset', fault.offset);
    case 'throttle':
      if (!(fault.bytesPerSecond > 0))
        throw new RangeError('fault throttle: bytesPerSecond must be positive');
      return;
    default:
      return;
  }
}
