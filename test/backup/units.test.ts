import { describe, expect, it } from 'vitest';
import { parseBackupInput } from '../../lambdas/backup/input.ts';
import { newBackupId, objectKey, manifestKey } from '../../lambdas/catalog/keys.ts';
import { parseManifest } from '../../lambdas/catalog/manifest.ts';
import {
  exportMemoryBytes,
  largestPartSizeWithin,
  partSizeFor,
  S3_MAX_PARTS,
  uploadCapacity,
  vhdExportUpperBound,
} from '../../lambdas/export/part-size.ts';
import { failureMessage } from '../../lambdas/shared/failure.ts';
import { InputValidationError } from '../../lambdas/shared/input-error.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const uuid = '3f1c2d4e-8a9b-4c5d-9e0f-112233445566';

describe('part size', () => {
  it('is 16 MiB for small disks and grows so 9,000 parts hold the largest possible export', () => {
    expect(partSizeFor(1 * GiB)).toBe(16 * MiB);
    const bound = 2040 * GiB;
    const size = partSizeFor(bound);
    expect(size % MiB).toBe(0);
    expect(Math.ceil(bound / size)).toBeLessThanOrEqual(9_000);
    expect(size * S3_MAX_PARTS).toBeGreaterThan(bound);
  });
  it('refuses an export that would need parts above 5 GiB', () => {
    expect(() => partSizeFor(60 * 1024 * GiB)).toThrow(/5 GiB part limit/);
  });
  it("a disk's upper bound holds every block with its bitmap; the upload capacity is 10,000 parts", () => {
    expect(vhdExportUpperBound(64 * MiB)).toBe(2560 + 512 + 32 * (512 + 2 * MiB));
    expect(uploadCapacity(16 * MiB)).toBe(16 * MiB * S3_MAX_PARTS);
  });
});

describe('export memory', () => {
  // Peak RSS measured for one export (2–8 GiB, Node 24, TRANSFER_PROCESS_ENV, Swift): [part MiB, in flight, MiB].
  const measured = [
    [16, 4, 252],
    [32, 4, 364],
    [64, 4, 623],
    [128, 4, 954],
    [232, 4, 1586],
    [32, 2, 301],
    [32, 8, 488],
  ] as const;
  it.each(measured)(
    'the model is above the measured peak for %i MiB parts, %i in flight (%i MiB)',
    (part, n, peak) => {
      expect(exportMemoryBytes(part * MiB, n)).toBeGreaterThanOrEqual(peak * MiB);
    },
  );
  it('the largest part that fits is whole MiB, fits, and is none below 16 MiB', () => {
    const part = largestPartSizeWithin(1024 * MiB, 4)!;
    expect(part % MiB).toBe(0);
    expect(exportMemoryBytes(part, 4)).toBeLessThanOrEqual(1024 * MiB);
    expect(exportMemoryBytes(part + MiB, 4)).toBeGreaterThan(1024 * MiB);
    expect(largestPartSizeWithin(256 * MiB, 4)).toBeUndefined();
  });
});

describe('backup input', () => {
  it('accepts the documented shape and defaults mode to auto', () => {
    const none = { vmUuids: [], tags: [] };
    expect(parseBackupInput({ vdiUuids: [uuid.toUpperCase()] })).toEqual({
      vdiUuids: [uuid],
      ...none,
      mode: 'auto',
    });
    expect(parseBackupInput({ vdiUuids: [uuid], concurrency: 3 })).toEqual({
      vdiUuids: [uuid],
      ...none,
      mode: 'auto',
      concurrency: 3,
    });
    expect(parseBackupInput({ vdiUuids: [uuid], pool: 'lab', mode: 'full' })).toEqual({
      vdiUuids: [uuid],
      ...none,
      pool: 'lab',
      mode: 'full',
    });
    // VMs by uuid and by tag, alone or with disks.
    expect(parseBackupInput({ vmUuids: [uuid.toUpperCase()], tags: ['nightly'] })).toEqual({
      vdiUuids: [],
      vmUuids: [uuid],
      tags: ['nightly'],
      mode: 'auto',
    });
    expect(parseBackupInput({ tags: ['nightly'] })).toMatchObject({
      vdiUuids: [],
      vmUuids: [],
      tags: ['nightly'],
    });
  });
  it.each([
    [null, 'input'],
    [{}, 'vdiUuids'],
    [{ vdiUuids: [] }, 'vdiUuids'],
    [{ vdiUuids: ['nope'] }, 'vdiUuids[0]'],
    [{ vdiUuids: [uuid, uuid] }, 'vdiUuids'],
    [{ vdiUuids: [uuid], mode: 'delta' }, 'mode'],
    [{ vdiUuids: [uuid], pool: 'a b' }, 'pool'],
    [{ vdiUuids: [uuid], vdiUuid: uuid }, 'vdiUuid'],
    [{ vdiUuids: [uuid], concurrency: 0 }, 'concurrency'],
    [{ vdiUuids: [uuid], concurrency: 1.5 }, 'concurrency'],
    [{ vmUuids: [] }, 'vmUuids'],
    [{ vmUuids: ['nope'] }, 'vmUuids[0]'],
    [{ vmUuids: [uuid, uuid.toUpperCase()] }, 'vmUuids'],
    [{ vmUuids: uuid }, 'vmUuids'],
    [{ tags: [] }, 'tags'],
    [{ tags: [''] }, 'tags[0]'],
    [{ tags: ['a', 'a'] }, 'tags'],
    [{ tags: ['x'.repeat(256)] }, 'tags[0]'],
    [{ tags: 'nightly' }, 'tags'],
  ])('names the field of %j', (input, field) => {
    try {
      parseBackupInput(input);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InputValidationError);
      expect((error as InputValidationError).field).toBe(field);
      expect((error as Error).message).toMatch(new RegExp(`^${field.replace(/[[\]]/g, '\\$&')}: `));
    }
  });
});

describe('catalog keys', () => {
  it('sort by time and keep milliseconds apart', () => {
    const a = newBackupId(new Date('2026-11-26T16:40:00.001Z'), 'full');
    const b = newBackupId(new Date('2026-11-26T16:40:00.002Z'), 'delta');
    expect(a).toBe('20261126T164000.001Z-full');
    expect([b, a].sort()).toEqual([a, b]);
    const location = { bucket: 'b', prefix: 'backups' };
    expect(objectKey(location, 'lab', uuid, a)).toBe(`backups/lab/${uuid}/${a}.vhd`);
    expect(manifestKey({ bucket: 'b', prefix: '' }, 'lab', uuid, a)).toBe(`lab/${uuid}/${a}.json`);
  });
});

describe('manifest parsing', () => {
  const valid = {
    formatVersion: 1,
    backupId: 'x',
    kind: 'delta',
    parentBackupId: 'w',
    pool: 'lab',
    vdiUuid: uuid,
    snapshotUuid: uuid,
    objectKey: 'k',
    sha256: 'ab',
    virtualSize: 1,
    bytes: 2,
    presentBlocks: 0,
  };
  it('accepts a valid manifest', () => {
    expect(parseManifest(JSON.stringify(valid), 'k.json').kind).toBe('delta');
  });
  it('refuses broken ones, naming what is wrong', () => {
    expect(() => parseManifest('{', 'k.json')).toThrow(/not JSON/);
    expect(() => parseManifest(JSON.stringify({ ...valid, parentBackupId: null }), 'k.json')).toThrow(
      /delta without parentBackupId/,
    );
    expect(() => parseManifest(JSON.stringify({ ...valid, bytes: -1 }), 'k.json')).toThrow(
      /bytes not a size/,
    );
  });
});

describe('failure messages', () => {
  it('unwraps the JSON cause Lambda produces and keeps a plain one', () => {
    const lambdaCause = JSON.stringify({
      errorType: 'XapiError',
      errorMessage: 'VDI.snapshot failed: SR_FULL',
    });
    expect(failureMessage({ Error: 'XapiError', Cause: lambdaCause })).toEqual({
      error: 'XapiError',
      cause: 'VDI.snapshot failed: SR_FULL',
    });
    expect(failureMessage({ Error: 'E', Cause: 'plain' })).toEqual({ error: 'E', cause: 'plain' });
    expect(failureMessage(undefined)).toEqual({ error: 'UnknownError', cause: 'UnknownError' });
  });
});
