import { Duration } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';
import {
  TRANSFER_ENV,
  transferFieldVariable,
  type TransferStep,
} from '../../lambdas/transfer/transfer-task.ts';
import { TRANSFER_PROCESS_ENV } from '../../lambdas/transfer/process-env.ts';

export interface TransferTaskProps {
  /** Environment of the container: the same the step functions get (bucket, prefix, pools). */
  readonly environment: Record<string, string>;
  /** Where tasks run. @default - a new VPC with public subnets only (no NAT), tasks get a public IP */
  readonly vpc?: ec2.IVpc;
  /** @default - the VPC's private subnets with egress when `vpc` is given */
  readonly subnets?: ec2.SubnetSelection;
  /** @default - a security group allowing egress only on TCP 443 and the pools' ports */
  readonly securityGroups?: readonly ec2.ISecurityGroup[];
  /** TCP ports the default security group lets out (443 for AWS APIs, and the pools'). @default [443] */
  readonly egressPorts?: readonly number[];
  /** vCPU units of a task. @default 2048 */
  readonly cpu?: number;
  /** MiB of a task (part size × parts in flight must fit). @default 4096 */
  readonly memoryMiB?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

/** The container's name in the task definition. */
export const TRANSFER_CONTAINER = 'transfer';

/**
 * How long a `.sync` state waits for its task. XAPI ends a transfer after 24 hours, so a task still running
 * an hour after that is hung: without a limit it would hold the execution for up to a year.
 */
export const TRANSFER_TASK_TIMEOUT = Duration.hours(25);

/**
 * What Step Functions' ECS integration raises when RunTask itself fails, so no task ran and starting it again
 * is safe: `ECS.AmazonECSException` for throttling ("Rate exceeded") and for Fargate capacity ("Capacity is
 * unavailable at this time"), `ECS.ServerException` for ECS's own errors, and
 * `ECS.InvalidParameterException`, which ECS also returns when its EC2 calls for the subnets or security
 * groups are throttled. A task that ran and failed raises `States.TaskFailed`: not retried here.
 */
export const TRANSFER_START_ERRORS = [
  'ECS.AmazonECSException',
  'ECS.ServerException',
  'ECS.InvalidParameterException',
];

/**
 * Exports and imports that may outlive a Lambda's 15 minutes run here: an ECS Fargate task whose container
 * runs the same domain code (`lambdas/container/main.ts`). The workflows start it with `ecs:runTask.sync`
 * and read its result from S3. The image is built from `lambdas/container/Dockerfile` at deploy time; synth
 * only stages its context.
 */
export class TransferTask extends Construct {
  readonly cluster: ecs.Cluster;
  readonly taskDefinition: ecs.FargateTaskDefinition;
  readonly securityGroups: readonly ec2.ISecurityGroup[];
  readonly subnets: ec2.SubnetSelection;
  readonly assignPublicIp: boolean;

  constructor(scope: Construct, id: string, props: TransferTaskProps) {
    super(scope, id);
    const vpc =
      props.vpc ??
      new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC }],
      });
    if (!props.vpc) (vpc as ec2.Vpc).addFlowLog('FlowLog');
    this.assignPublicIp = props.vpc === undefined;
    this.subnets = props.subnets ?? {
      subnetType: props.vpc ? ec2.SubnetType.PRIVATE_WITH_EGRESS : ec2.SubnetType.PUBLIC,
    };
    this.cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED,
    });
    this.taskDefinition = new ecs.FargateTaskDefinition(this, 'TaskDefinition', {
      cpu: props.cpu ?? 2048,
      memoryLimitMiB: props.memoryMiB ?? 4096,
      runtimePlatform: {
        cpuArchitecture: ecs.CpuArchitecture.ARM64,
        operatingSystemFamily: ecs.OperatingSystemFamily.LINUX,
      },
    });
    const root = fileURLToPath(new URL('../..', import.meta.url));
    this.taskDefinition.addContainer(TRANSFER_CONTAINER, {
      // The task runs on ARM64: built on an x86 machine without a platform, the image could not start
      // (`exec format error`).
      image: ecs.ContainerImage.fromAsset(root, {
        file: 'lambdas/container/Dockerfile',
        platform: Platform.LINUX_ARM64,
      }),
      environment: { ...TRANSFER_PROCESS_ENV, ...props.environment },
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({
        streamPrefix: 'transfer',
        logGroup: new logs.LogGroup(this, 'Logs', {
          retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
        }),
      }),
      stopTimeout: Duration.seconds(30),
    });
    this.securityGroups = props.securityGroups ?? [
      new ec2.SecurityGroup(this, 'SecurityGroup', {
        vpc,
        description: 'vdi-vault transfer tasks: HTTPS to the pools and AWS APIs, nothing else',
        allowAllOutbound: false,
      }),
    ];
    if (!props.securityGroups) {
      for (const port of [...new Set(props.egressPorts ?? [443])].sort((a, b) => a - b)) {
        (this.securityGroups[0] as ec2.SecurityGroup).addEgressRule(
          ec2.Peer.anyIpv4(),
          ec2.Port.tcp(port),
          `HTTPS/XAPI on ${port}`,
        );
      }
    }
  }

  /**
   * A state that runs one transfer step on Fargate and waits for it (`ecs:runTask.sync`). The container
   * gets the state's `fields` as its input, one environment variable each (never the session: RunTask's
   * parameters are recorded by CloudTrail; the task logs in itself), and writes its result to
   * `resultKeyPath`'s key. ECS allows 8,192 characters of overrides: the fields hold ids, never lists that
   * grow with the data (a chain's layers stay in S3). A start that fails
   * (`TRANSFER_START_ERRORS`) is retried with backoff and jitter; the state times out after
   * `TRANSFER_TASK_TIMEOUT` (`States.Timeout`).
   */
  runState(
    scope: Construct,
    stateName: string,
    step: TransferStep,
    resultKeyPath: string,
    fields: readonly string[],
  ): tasks.EcsRunTask {
    const state = new tasks.EcsRunTask(scope, stateName, {
      stateName,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      launchTarget: new tasks.EcsFargateLaunchTarget({ platformVersion: ecs.FargatePlatformVersion.LATEST }),
      subnets: this.subnets,
      securityGroups: [...this.securityGroups],
      assignPublicIp: this.assignPublicIp,
      containerOverrides: [
        {
          containerDefinition: this.taskDefinition.defaultContainer!,
          environment: [
            { name: TRANSFER_ENV.step, value: step },
            ...fields.map((field) => ({
              name: transferFieldVariable(field),
              value: sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt(`$.${field}`)),
            })),
            { name: TRANSFER_ENV.resultKey, value: sfn.JsonPath.stringAt(resultKeyPath) },
          ],
        },
      ],
      // The ECS task's description is not the transfer's result: the collecting state reads that from S3.
      resultPath: sfn.JsonPath.DISCARD,
      taskTimeout: sfn.Timeout.duration(TRANSFER_TASK_TIMEOUT),
    });
    state.addRetry({
      errors: TRANSFER_START_ERRORS,
      interval: Duration.seconds(10),
      backoffRate: 2,
      maxAttempts: 6,
      maxDelay: Duration.minutes(5),
      jitterStrategy: sfn.JitterType.FULL,
    });
    return state;
  }
}
