import { PROGRESS_STALE_AFTER_MS } from '../lambdas/runtime/defaults.ts';
import type { ExecutionProgress } from '../lambdas/shared/transfer-progress.ts';
import { formatBytes, formatDuration, formatRate } from './format.ts';
import { describeEvent, isProgress, type ExecutionEvent } from './execution-events.ts';
import type { Output } from './output.ts';

export interface Bar {
  readonly startedAt: number;
  bytes: number;
  total?: number;
  updatedAt: number;
  /** A deployed transfer's own figure over its last interval; local bars use the average. */
  bytesPerSecond?: number;
  /** Read from a deployed transfer's progress record: it may stop updating (a killed Lambda or task). */
  recorded?: boolean;
}

const BAR_WIDTH = 24;
const REDRAW_MS = 100;

/**
 * Shows an execution as it runs, on stderr: one line per step, and below them one progress bar per
 * transfer with bytes/s. Bars are drawn only on a TTY; with --json nothing is shown at all.
 */
export class LiveDisplay {
  readonly #output: Output;
  readonly #bars = new Map<string, Bar>();
  readonly #now: () => number;
  #drawnLines = 0;
  #lastDraw = 0;

  constructor(output: Output, now: () => number = Date.now) {
    this.#output = output;
    this.#now = now;
  }

  /** Whether anything is drawn: callers skip fetching progress nobody would see. */
  get live(): boolean {
    return this.#live;
  }

  get #live(): boolean {
    return !this.#output.json && this.#output.stderr.isTTY === true;
  }

  event(event: ExecutionEvent): void {
    if (isProgress(event)) {
      this.progress(event.transfer, event.bytes, event.total, Date.parse(event.at));
      return;
    }
    const line = describeEvent(event, this.#output.errColour);
    if (line === undefined || this.#output.json) return;
    this.#erase();
    this.#output.stderr.write(line + '\n');
    this.#draw();
  }

  /** `at` lets `watch` replay recorded progress at the rate it happened. */
  progress(transfer: string, bytes: number, total?: number, at: number = this.#now()): void {
    const bar = this.#bars.get(transfer) ?? { startedAt: at, bytes: 0, updatedAt: at };
    bar.bytes = bytes;
    bar.updatedAt = at;
    if (total !== undefined) bar.total = total;
    this.#bars.set(transfer, bar);
    if (this.#now() - this.#lastDraw >= REDRAW_MS) {
      this.#erase();
      this.#draw();
    }
  }

  /**
   * The progress records of a deployed execution's running transfers: each becomes a bar; a bar whose
   * record went away (its transfer ended) goes too. Redrawn every time, so a stalled transfer's "no
   * progress for …" keeps counting.
   */
  recorded(transfers: ExecutionProgress): void {
    for (const [transfer, bar] of this.#bars) {
      if (bar.recorded && !(transfer in transfers)) this.#bars.delete(transfer);
    }
    for (const [transfer, record] of Object.entries(transfers)) {
      this.#bars.set(transfer, {
        startedAt: Date.parse(record.startedAt),
        bytes: record.bytes,
        ...(record.total !== undefined ? { total: record.total } : {}),
        updatedAt: Date.parse(record.updatedAt),
        bytesPerSecond: record.bytesPerSecond,
        recorded: true,
      });
    }
    this.#erase();
    this.#draw();
  }

  /** Removes the bars: the summary that follows carries the final numbers. */
  close(): void {
    this.#erase();
    this.#bars.clear();
  }

  #erase(): void {
    if (!this.#live || this.#drawnLines === 0) return;
    this.#output.stderr.write(`\x1b[${this.#drawnLines}A\r\x1b[J`);
    this.#drawnLines = 0;
  }

  #draw(): void {
    if (!this.#live || this.#bars.size === 0) return;
    const lines = [...this.#bars].map(([transfer, bar]) => barLine(transfer, bar, this.#now()));
    this.#output.stderr.write(lines.map((line) => line + '\x1b[K\n').join(''));
    this.#drawnLines = lines.length;
    this.#lastDraw = this.#now();
  }
}

/**
 * `  export 3f1c…  [######......]  40%  12.0 MiB / 30.0 MiB  35.2 MB/s  ETA 1 min 20 s`; a recorded
 * transfer whose record stopped moving: `…  stalled: no progress for 2 min 5 s`.
 */
export function barLine(transfer: string, bar: Bar, now: number): string {
  const seconds = (bar.updatedAt - bar.startedAt) / 1000;
  const perSecond = bar.bytesPerSecond ?? bar.bytes / Math.max(seconds, 0.001);
  let gauge: string;
  let amount = formatBytes(bar.bytes);
  if (bar.total) {
    const fraction = Math.min(bar.bytes / bar.total, 1);
    const filled = Math.round(fraction * BAR_WIDTH);
    gauge = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%`;
    amount += ` / ${formatBytes(bar.total)}`;
  } else {
    // An export announces no length: a marker moves to show life, the numbers carry the facts.
    const position = Math.floor(((now - bar.startedAt) / 1000) * 8) % BAR_WIDTH;
    gauge = `[${Array.from({ length: BAR_WIDTH }, (_, i) => (i === position ? '#' : '.')).join('')}]`;
  }
  const silentFor = now - bar.updatedAt;
  if (bar.recorded && silentFor > PROGRESS_STALE_AFTER_MS) {
    return `  ${transfer}  ${gauge}  ${amount}  stalled: no progress for ${formatDuration(silentFor)}`;
  }
  const rate = formatRate(perSecond, 1);
  const eta =
    bar.total !== undefined && bar.bytes < bar.total && perSecond > 0
      ? `  ETA ${formatDuration(((bar.total - bar.bytes) / perSecond) * 1000)}`
      : '';
  return `  ${transfer}  ${gauge}  ${amount}  ${rate}${eta}`;
}
