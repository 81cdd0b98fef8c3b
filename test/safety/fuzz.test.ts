import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBackupInput } from '../../lambdas/backup/input.ts';
import { parseRestoreRequest } from '../../lambdas/restore/input.ts';
import { InputValidationError } from '../../lambdas/shared/input-error.ts';
import { readVhdBlockMap, VhdFormatError, VhdStreamParser } from '../../lambdas/vhd/index.ts';
import { chunksOf, makeDisk, vhdBytes } from '../vhd/disks.ts';
import { startBackupWorld, type BackupWorld } from '../world/backup-world.ts';
import { listKeys } from '../world/s3.ts';

const MiB = 1024 * 1024;
const uuid = fc.uuid();
const nearlyValidBackup = fc.record(
  {
    vdiUuids: fc.oneof(fc.array(fc.oneof(uuid, fc.string(), fc.integer())), fc.anything()),
    pool: fc.oneof(fc.constant('lab'), fc.string(), fc.anything()),
    mode: fc.oneof(fc.constantFrom('auto', 'full', 'delta'), fc.anything()),
    retention: fc.oneof(fc.record({ keep: fc.integer(), fullEvery: fc.integer() }), fc.anything()),
    extra: fc.anything(),
  },
  { requiredKeys: [] },
);
const nearlyValidRestore = fc.record(
  {
    vdiUuid: fc.oneof(uuid, fc.string(), fc.anything()),
    srUuid: fc.oneof(uuid, fc.string(), fc.anything()),
    restorePoint: fc.oneof(
      fc.constantFrom('latest', '2026-11-26T00:00:00Z', '20261126T000000.000Z-full'),
      fc.string(),
    ),
    strategy: fc.oneof(fc.constantFrom('replay', 'merge'), fc.anything()),
    keepPartial: fc.anything(),
    nameLabel: fc.anything(),
    pool: fc.anything(),
  },
  { requiredKeys: [] },
);

/** Either a parsed value or an InputValidationError naming a field: never anything else. */
function onlyValidationErrors(parse: (input: unknown) => unknown) {
  return (input: unknown) => {
    try {
      parse(input);
    } catch (error) {
      expect(error).toBeInstanceOf(InputValidationError);
      expect((error as InputValidationError).field.length).toBeGreaterThan(0);
    }
  };
}

describe('bad input, fuzzed', () => {
  it('backup inputs parse or fail with a validation error naming a field', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), nearlyValidBackup), onlyValidationErrors(parseBackupInput)),
      {
        numRuns: 2_000,
      },
    );
  });

  it('restore inputs parse or fail with a validation error naming a field', () => {
    fc.assert(
      fc.property(fc.oneof(fc.anything(), nearlyValidRestore), onlyValidationErrors(parseRestoreRequest)),
      {
        numRuns: 2_000,
      },
    );
  });

  describe('through the workflows', () => {
    let world: BackupWorld;
    beforeAll(async () => {
      world = await startBackupWorld({ vdi: { virtualSize: 8 * MiB, populate: 'scattered' } });
    });
    afterAll(async () => {
      await world.close();
    });

    it('an invalid input fails the execution with the validation error and has no side effect', async () => {
      const vdisBefore = await world.vdiUuids();
      const invalidBackup = nearlyValidBackup.filter((input) => {
        try {
          parseBackupInput(input);
          return false;
        } catch {
          return true;
        }
      });
      const invalidRestore = nearlyValidRestore.filter((input) => {
        try {
          parseRestoreRequest(input);
          return false;
        } catch {
          return true;
        }
      });
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            invalidBackup.map((i) => ['backup', i] as const),
            invalidRestore.map((i) => ['restore', i] as const),
          ),
          async ([workflow, input]) => {
            const run = workflow === 'backup' ? await world.backup(input) : await world.restore(input);
            expect(run.status).toBe('FAILED');
            expect(run.error).toBe('InputValidationError');
            expect(run.cause).toMatch(/^\S+: /);
            expect(world.sim.openSessions()).toEqual([]);
            expect(world.sim.openTasks()).toEqual([]);
          },
        ),
        { numRuns: 12 },
      );
      expect(await world.vdiUuids()).toEqual(vdisBefore);
      expect(await listKeys(world.s3, world.bucket)).toEqual([]);
    });
  });
});

describe('the VHD parser, fuzzed with malformed streams', () => {
  let valid: Buffer;
  beforeAll(async () => {
    valid = (await vhdBytes(makeDisk(5 * MiB + 512, [0, 2]))).bytes;
  });

  function parseOutcome(bytes: Uint8Array, chunkSizes: number[]): 'ok' | 'format-error' {
    const parser = new VhdStreamParser({ keepBlockData: false });
    try {
      for (const chunk of chunksOf(bytes, chunkSizes)) parser.write(chunk);
      parser.end();
      return 'ok';
    } catch (error) {
      if (!(error instanceof VhdFormatError)) throw error;
      expect(error.offset).toBeGreaterThanOrEqual(0);
      return 'format-error';
    }
  }

  it('random mutations anywhere end in a clean parse or a VhdFormatError', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 5 }),
        (mutations, chunks) => {
          const bytes = Buffer.from(valid);
          for (const { at, value } of mutations) bytes[at % bytes.length] = value;
          parseOutcome(bytes, chunks);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('every truncation is a VhdFormatError', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: valid.length - 1 }), (length) => {
        expect(parseOutcome(valid.subarray(0, length), [65_536])).toBe('format-error');
      }),
      { numRuns: 300 },
    );
  });

  it('huge BAT sizes and absurd virtual sizes are refused from the head alone', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({ at: fc.integer({ min: 0, max: 2047 }), value: fc.integer({ min: 0, max: 255 }) }),
        async ({ at, value }) => {
          const head = Buffer.from(valid.subarray(0, 2048 + 512));
          head[at] = value;
          const read = async (start: number, length: number) => {
            if (length > 64 * MiB) throw new Error(`asked to read ${length} bytes`);
            return valid.subarray(start, start + length).length === length && start >= 2048
              ? valid.subarray(start, start + length)
              : head.subarray(start, start + length);
          };
          await readVhdBlockMap(read, valid.length).catch((error: unknown) => {
            expect(error).toBeInstanceOf(VhdFormatError);
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
