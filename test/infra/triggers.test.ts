import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBackupInput } from '../../lambdas/backup/input.ts';
import { JOB, POOL, resourceOf, synth, VDI, type Synthesized } from './synth.ts';

let deployed: Synthesized;
const SECOND_VDI = '0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3';

beforeAll(() => {
  deployed = synth(
    {
      pools: [POOL],
      jobs: [
        JOB,
        {
          name: 'weekly-full',
          pool: 'lab',
          vdiUuids: [VDI, SECOND_VDI],
          schedule: 'rate(7 days)',
          mode: 'full',
          enabled: false,
          concurrency: 1,
        },
        { name: 'tagged-vms', pool: 'lab', tags: ['backup-nightly'], schedule: 'rate(1 day)' },
      ],
    },
    { nagChecks: false },
  );
});

describe('triggers', () => {
  it('creates one schedule per job that starts the backup state machine with the job input', () => {
    const { template } = deployed;
    template.resourceCountIs('AWS::Scheduler::Schedule', 3);
    const backupArn = { Ref: Match.stringLikeRegexp('^BackupStateMachine') };
    const nightly = resourceOf(template, 'AWS::Scheduler::Schedule', 'TriggersJobnightly');
    expect(nightly.Properties).toMatchObject({
      ScheduleExpression: 'cron(0 2 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Paris',
      State: 'ENABLED',
      FlexibleTimeWindow: { Mode: 'OFF' },
    });
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 2 * * ? *)',
      Target: Match.objectLike({ Arn: backupArn }),
    });
    const input = (properties: Record<string, unknown>) =>
      JSON.parse((properties.Target as { Input: string }).Input) as unknown;
    // The job's name rides in the input (its metrics carry it), and the backup's input parser takes it.
    expect(input(nightly.Properties)).toEqual({
      job: 'nightly',
      vdiUuids: [VDI],
      pool: 'lab',
      mode: 'auto',
      retention: { keep: 14, fullEvery: 7 },
    });
    const weekly = resourceOf(template, 'AWS::Scheduler::Schedule', 'TriggersJobweeklyfull');
    expect(weekly.Properties).toMatchObject({
      ScheduleExpression: 'rate(7 days)',
      ScheduleExpressionTimezone: 'UTC',
      State: 'DISABLED',
    });
    // A job's concurrency travels in its input: the backup Map reads it (MaxConcurrencyPath).
    expect(input(weekly.Properties)).toEqual({
      job: 'weekly-full',
      vdiUuids: [VDI, SECOND_VDI],
      pool: 'lab',
      mode: 'full',
      concurrency: 1,
    });
    // A job by tags: the VMs are found at each run, so a VM tagged later is taken.
    const tagged = resourceOf(template, 'AWS::Scheduler::Schedule', 'TriggersJobtaggedvms');
    expect(input(tagged.Properties)).toEqual({
      job: 'tagged-vms',
      tags: ['backup-nightly'],
      pool: 'lab',
      mode: 'auto',
    });
    for (const schedule of [nightly, weekly, tagged]) {
      const job = (input(schedule.Properties) as { job: string }).job;
      expect(parseBackupInput(input(schedule.Properties)).job).toBe(job);
    }
    expect(tagged.Properties.Description).toBe(
      'vdi-vault job tagged-vms: VMs tagged backup-nightly of pool lab',
    );
    const [backup] = Object.values(template.findResources('AWS::StepFunctions::StateMachine')).filter((m) =>
      JSON.stringify(m.Properties.DefinitionString).includes('BackupEachVdi'),
    );
    expect(JSON.stringify(backup!.Properties.DefinitionString)).toContain(
      '\\"MaxConcurrencyPath\\":\\"$.concurrency\\"',
    );
  });

  it('starts a backup on a Backup Requested event choosing VDIs, VMs or tags, with the detail as input', () => {
    deployed.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['vdi-vault'],
        'detail-type': ['Backup Requested'],
        detail: {
          $or: [
            { vdiUuids: [{ exists: true }] },
            { vmUuids: [{ exists: true }] },
            { tags: [{ exists: true }] },
          ],
        },
      },
      Targets: [
        Match.objectLike({
          Arn: { Ref: Match.stringLikeRegexp('^BackupStateMachine') },
          InputPath: '$.detail',
        }),
      ],
    });
  });

  it('lets the trigger role start backups only, and use the key only for that state machine and its dead letters', () => {
    const { template } = deployed;
    const role = resourceOf(template, 'AWS::IAM::Role', 'TriggersStartBackupRole');
    expect(JSON.stringify(role.Properties.AssumeRolePolicyDocument)).toContain('scheduler.amazonaws.com');
    const policy = resourceOf(template, 'AWS::IAM::Policy', 'TriggersStartBackupRole');
    const statements = (
      policy.Properties.PolicyDocument as { Statement: { Action: unknown; Resource: unknown }[] }
    ).Statement;
    const deadLetters = { 'Fn::GetAtt': [expect.stringMatching(/^TriggersDeadLetters/), 'Arn'] };
    expect(statements).toEqual([
      expect.objectContaining({
        Action: 'states:StartExecution',
        Resource: { Ref: expect.stringMatching(/^BackupStateMachine/) },
      }),
      expect.objectContaining({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Condition: {
          StringEquals: {
            'kms:EncryptionContext:aws:states:stateMachineArn': {
              Ref: expect.stringMatching(/^BackupStateMachine/),
            },
          },
        },
      }),
      // Scheduler sends a schedule's dead letters with this role.
      expect.objectContaining({
        Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
        Condition: {
          StringEquals: {
            'kms:ViaService': expect.anything(),
            'kms:EncryptionContext:aws:sqs:arn': deadLetters,
          },
        },
      }),
      expect.objectContaining({ Action: 'sqs:SendMessage', Resource: deadLetters }),
    ]);
  });

  it('creates no schedule without jobs, but keeps the event rule', () => {
    const { template } = synth({ pools: [POOL] }, { nagChecks: false });
    template.resourceCountIs('AWS::Scheduler::Schedule', 0);
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({ source: ['vdi-vault'] }),
    });
  });
});
