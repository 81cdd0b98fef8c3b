import { randomBytes } from 'node:crypto';
import { runLocalBackup, type LocalTarget } from '../world/local/local-backup.ts';
import { BLOCK_SIZE, type XapiSimulator } from '../world/xapi-simulator/index.ts';

export interface BackupChain {
  readonly vdiUuid: string;
  /** Oldest first: the full, then each delta. */
  readonly backupIds: readonly string[];
  readonly bytes: readonly number[];
  /** The disk's sha256 right after each backup: what a restore of that point must reproduce. */
  readonly sha256After: ReadonlyMap<string, string>;
  /** States entered by the first (one-VDI, full) backup: the transitions Step Functions bills. */
  readonly fullBackupTransitions: number;
  readonly deltaBackupTransitions: number;
}

/** Deterministic, so every run writes the same places (xorshift32). */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const HOT_BLOCKS = 24;
const HOT_WRITES_PER_DELTA = 8;
const COLD_WRITES_PER_DELTA = 2;
const WRITE_BYTES = 64 * 1024;

/**
 * A full backup, then `deltas` deltas, each after writes that overlap the earlier ones: most land in a
 * hot set of 24 blocks (as a filesystem's journal and metadata do), a few anywhere. Replay moves every
 * rewrite of a hot block again; a merge moves each block once. `hashPoints` are the backup indexes whose
 * disk content is hashed for restore verification.
 */
export async function buildBackupChain(
  sim: XapiSimulator,
  target: LocalTarget,
  virtualSize: number,
  deltas: number,
  hashPoints: readonly number[],
  log: (line: string) => void,
): Promise<BackupChain> {
  const vdi = sim.addVdi({ virtualSize, nameLabel: 'bench restore chain', populate: 'scattered', seed: 7 });
  const random = prng(0x5eed);
  const blocks = Math.floor(virtualSize / BLOCK_SIZE);
  const hotStart = Math.floor(blocks / 3);
  const writeInto = (block: number): void => {
    const within = Math.floor(random() * ((BLOCK_SIZE - WRITE_BYTES) / 4096)) * 4096;
    sim.writeDisk(vdi.uuid, block * BLOCK_SIZE + within, randomBytes(WRITE_BYTES));
  };

  const backupIds: string[] = [];
  const bytes: number[] = [];
  const sha256After = new Map<string, string>();
  const transitions: number[] = [];
  for (let index = 0; index <= deltas; index++) {
    if (index > 0) {
      for (let i = 0; i < HOT_WRITES_PER_DELTA; i++)
        writeInto(hotStart + Math.floor(random() * Math.min(HOT_BLOCKS, blocks - hotStart)));
      for (let i = 0; i < COLD_WRITES_PER_DELTA; i++) writeInto(Math.floor(random() * blocks));
    }
    const run = await runLocalBackup(target, { vdiUuids: [vdi.uuid] });
    const outcome = run.summary?.outcomes[0];
    if (run.status !== 'SUCCEEDED' || outcome?.status !== 'succeeded' || !outcome.backupId) {
      throw new Error(
        `backup ${index} failed: ${run.error ?? outcome?.error}: ${run.cause ?? outcome?.cause}`,
      );
    }
    if (outcome.kind !== (index === 0 ? 'full' : 'delta')) {
      throw new Error(
        `backup ${index} was a ${outcome.kind} (${outcome.fullReason ?? ''}), expected a chain`,
      );
    }
    backupIds.push(outcome.backupId);
    bytes.push(outcome.bytes ?? 0);
    transitions.push(run.statesEntered.length);
    if (hashPoints.includes(index)) sha256After.set(outcome.backupId, sim.diskSha256(vdi.uuid));
    log(`backup ${index}: ${outcome.kind} ${outcome.backupId}, ${outcome.bytes} bytes`);
  }
  return {
    vdiUuid: vdi.uuid,
    backupIds,
    bytes,
    sha256After,
    fullBackupTransitions: transitions[0]!,
    deltaBackupTransitions: transitions[1] ?? transitions[0]!,
  };
}
