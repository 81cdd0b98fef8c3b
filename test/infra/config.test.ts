import { describe, expect, it } from 'vitest';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, parseConfig } from '../../infra/config/config.ts';
import { JOB, POOL, synth } from './synth.ts';

const base = { pools: [POOL] };
const withJob = (job: Record<string, unknown>) => ({ ...base, jobs: [{ ...JOB, ...job }] });

describe('configuration', () => {
  it('accepts the shipped example and a minimal config', () => {
    expect(
      loadConfigFile(new URL('../../infra/config/example.config.json', import.meta.url).pathname).jobs,
    ).toHaveLength(1);
    expect(parseConfig(base).pools[0]!.name).toBe('lab');
  });

  it.each([
    [{ pools: [] }, 'pools'],
    [{ pools: [{ ...POOL, url: 'xcp' }] }, 'pools[0].url'],
    [{ pools: [POOL, POOL] }, 'pools[1].name'],
    [{ pools: [{ ...POOL, secret: '' }] }, 'pools[0].secret'],
    [
      { pools: [{ ...POOL, secret: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:lab' }] },
      'pools[0].secret',
    ],
    [{ pools: [{ ...POOL, caCertificate: 'not a pem' }] }, 'pools[0].caCertificate'],
    [{ pools: [{ ...POOL, pinnedSha256: 'abc' }] }, 'pools[0].pinnedSha256'],
    [{ pools: [{ ...POOL, passwd: 'x' }] }, 'pools[0].passwd'],
    [{ ...base, concurrency: 0 }, 'concurrency'],
    [{ ...base, fargateThresholdGiB: -1 }, 'fargateThresholdGiB'],
    [{ ...base, prefix: '/backups' }, 'prefix'],
    [{ ...base, jobz: [] }, 'jobz'],
    [{ ...base, network: { vpcId: 'vpc-1', subnetIds: ['subnet-0123456789abcdef0'] } }, 'network.vpcId'],
    [{ ...base, network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: [] } }, 'network.subnetIds'],
    [
      { ...base, network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'x'] } },
      'network.subnetIds[1]',
    ],
    [
      {
        ...base,
        network: {
          vpcId: 'vpc-0123456789abcdef0',
          subnetIds: ['subnet-0123456789abcdef0'],
          securityGroupId: 'default',
        },
      },
      'network.securityGroupId',
    ],
    [withJob({ name: 'night ly' }), 'jobs[0].name'],
    [{ ...base, jobs: [JOB, JOB] }, 'jobs[1].name'],
    [withJob({ pool: 'prod' }), 'jobs[0].pool'],
    [withJob({ vdiUuids: [] }), 'jobs[0].vdiUuids'],
    [withJob({ vdiUuids: ['not-a-uuid'] }), 'jobs[0].vdiUuids[0]'],
    [withJob({ vdiUuids: [JOB.vdiUuids[0], JOB.vdiUuids[0]!.toUpperCase()] }), 'jobs[0].vdiUuids'],
    [withJob({ vdiUuids: undefined }), 'jobs[0].vdiUuids'],
    [withJob({ vdiUuids: undefined, tags: [] }), 'jobs[0].tags'],
    [withJob({ vdiUuids: undefined, tags: [''] }), 'jobs[0].tags[0]'],
    [withJob({ vdiUuids: undefined, vmUuids: ['not-a-uuid'] }), 'jobs[0].vmUuids[0]'],
    [withJob({ schedule: '0 2 * * *' }), 'jobs[0].schedule'],
    [withJob({ timezone: 'Mars/Olympus' }), 'jobs[0].timezone'],
    [withJob({ mode: 'delta' }), 'jobs[0].mode'],
    [withJob({ concurrency: 41 }), 'jobs[0].concurrency'],
    [withJob({ retention: { keep: 0, fullEvery: 7 } }), 'jobs[0].retention.keep'],
    [withJob({ retention: { keep: 3, fullEvery: 1.5 } }), 'jobs[0].retention.fullEvery'],
    [{ ...base, bucket: { objectLock: { mode: 'LEGAL', days: 30 } } }, 'bucket.objectLock.mode'],
    [{ ...base, bucket: { objectLock: { mode: 'GOVERNANCE', days: 0 } } }, 'bucket.objectLock.days'],
    [
      { ...base, bucket: { existingBucketName: 'my-backups', objectLock: { mode: 'GOVERNANCE', days: 3 } } },
      'bucket.objectLock',
    ],
    [{ ...base, bucket: { existingBucketName: 'My_Bucket' } }, 'bucket.existingBucketName'],
    [
      { ...base, bucket: { existingKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/abc' } },
      'bucket.existingKeyArn',
    ],
    [{ ...base, bucket: { uploadChecksum: 'MD5' } }, 'bucket.uploadChecksum'],
    [{ ...base, notifications: { emails: ['ops'] } }, 'notifications.emails[0]'],
    [{ ...base, notifications: { existingTopicArn: 'topic' } }, 'notifications.existingTopicArn'],
    [{ ...base, alarms: { noSuccessfulBackupHours: 200 } }, 'alarms.noSuccessfulBackupHours'],
  ])('names the field of each error: %j → %s', (config, field) => {
    expect(() => parseConfig(config)).toThrow(`config ${field}: `);
  });

  it('names the file when it is missing or not JSON', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vdi-vault-config-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{ pools: ');
    expect(() => loadConfigFile(file)).toThrow(/^config \(file\): .*bad\.json is not valid JSON/);
    expect(() => loadConfigFile(join(dir, 'missing.json'))).toThrow(/^config \(file\): cannot read/);
  });

  it('fails synth with the field named, from context config', () => {
    expect(() => synth({ pools: [{ ...POOL, url: 'ftp://x' }] })).toThrow(/config pools\[0\]\.url/);
  });

  it('refuses pools whose settings would not fit in a Lambda environment', () => {
    const pem = `-----BEGIN CERTIFICATE-----\n${'A'.repeat(1800)}\n-----END CERTIFICATE-----`;
    const pools = ['a', 'b'].map((name) => ({ ...POOL, name, caCertificate: pem }));
    expect(() => synth({ pools }, { nagChecks: false })).toThrow(/pinnedSha256/);
  });
});
