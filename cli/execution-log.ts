import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecutionEvent, ExecutionOutcome } from './execution-events.ts';
import { UnavailableError, UsageError } from './exit-codes.ts';

/**
 * A local execution's events as JSON lines (`<state-dir>/<execution-id>.jsonl`), so that `watch --local`
 * can follow it from another process: a header, every workflow event and throttled transfer progress
 * as they happen, then the result.
 */
export type ExecutionLogRecord = ExecutionLogHeader | ExecutionEvent | ExecutionLogResult;

export interface ExecutionLogHeader {
  readonly type: 'Execution';
  readonly executionId: string;
  readonly kind: 'backup' | 'restore';
  /** The validated workflow input and where it runs (never credentials). */
  readonly input: unknown;
  readonly target: unknown;
  /** The process running it: a log without a result whose process is gone was interrupted. */
  readonly pid: number;
  readonly at: string;
}

export interface ExecutionLogResult extends Omit<ExecutionOutcome, 'executionId'> {
  readonly type: 'ExecutionResult';
  readonly at: string;
}

const PROGRESS_EVERY_MS = 250;
const EXECUTION_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** `backup-20261126T164000123Z-1a2b3c`: sorts by start time, unique across processes. */
export function newExecutionId(kind: 'backup' | 'restore', now = new Date()): string {
  return `${kind}-${now.toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`;
}

export function executionLogPath(stateDir: string, executionId: string): string {
  if (!EXECUTION_ID.test(executionId)) {
    throw new UsageError(
      `"${executionId}" is not a local execution id (backup/restore print it, e.g. backup-20261126T164000123Z-1a2b3c)`,
    );
  }
  return join(stateDir, `${executionId}.jsonl`);
}

export class ExecutionRecorder {
  readonly #fd: number;
  readonly #lastProgress = new Map<string, number>();

  private constructor(fd: number) {
    this.#fd = fd;
  }

  static open(path: string, header: Omit<ExecutionLogHeader, 'type' | 'pid' | 'at'>): ExecutionRecorder {
    mkdirSync(join(path, '..'), { recursive: true });
    const recorder = new ExecutionRecorder(openSync(path, 'wx'));
    recorder.#write({ type: 'Execution', ...header, pid: process.pid, at: new Date().toISOString() });
    return recorder;
  }

  event(event: ExecutionEvent): void {
    this.#write(event);
  }

  /** Records a transfer's bytes at most a few times a second (the display redraws from these in `watch`). */
  progress(event: Extract<ExecutionEvent, { type: 'Progress' }>, force = false): void {
    const now = Date.now();
    if (!force && now - (this.#lastProgress.get(event.transfer) ?? 0) < PROGRESS_EVERY_MS) return;
    this.#lastProgress.set(event.transfer, now);
    this.#write(event);
  }

  finish(outcome: ExecutionOutcome): void {
    const { executionId: _id, ...result } = outcome;
    this.#write({ type: 'ExecutionResult', ...result, at: new Date().toISOString() });
    closeSync(this.#fd);
  }

  // Synchronous appends keep the file in event order, and a line is whole before `watch` can read it.
  #write(record: ExecutionLogRecord): void {
    writeSync(this.#fd, JSON.stringify(record) + '\n');
  }
}

/**
 * Reads an execution log and, with `follow`, keeps reading as lines are appended until the result line
 * comes, or the process that wrote it is gone (the result is then INTERRUPTED).
 */
export async function* readExecutionLog(
  path: string,
  options: { follow: boolean; pollMs?: number; isAlive?: (pid: number) => boolean },
): AsyncGenerator<ExecutionLogRecord> {
  const isAlive = options.isAlive ?? processIsAlive;
  let consumed = 0;
  let header: ExecutionLogHeader | undefined;
  while (true) {
    const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        throw new UnavailableError(
          `no execution log ${path}: check the execution id, and give the --state-dir it was started with`,
        );
      }
      throw new UnavailableError(`cannot read ${path}: ${error.message}`);
    });
    // Only whole lines: the writer may be half-way through one.
    const end = text.lastIndexOf('\n') + 1;
    for (const line of text.slice(consumed, end).split('\n')) {
      if (!line) continue;
      const record = JSON.parse(line) as ExecutionLogRecord;
      if (record.type === 'Execution') header = record as ExecutionLogHeader;
      yield record;
      if (record.type === 'ExecutionResult') return;
    }
    consumed = end;
    if (!options.follow) return;
    if (header && !isAlive(header.pid)) {
      // Read once more: the writer may have finished between our read and the check.
      const last = await readFile(path, 'utf8');
      if (last.length === consumed) {
        yield {
          type: 'ExecutionResult',
          status: 'INTERRUPTED',
          error: 'Interrupted',
          cause: `the process running it (pid ${header.pid}) ended before the execution did; check the pool for a left-over snapshot or task`,
          at: new Date().toISOString(),
        };
        return;
      }
      continue;
    }
    await sleep(options.pollMs ?? 200);
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
