/**
 * The local AWS account: a synthesized CloudFormation template resolved the way CloudFormation would
 * resolve it in one account and region. Physical names are deterministic (so ARNs in recorded calls are
 * stable across runs) and shaped like CloudFormation's; a test world can pin the ones it really created
 * (a bucket on Swift, a dynalite table) with overrides.
 */
import { createHash } from 'node:crypto';

export const LOCAL_ACCOUNT = { accountId: '123456789012', region: 'us-east-1', partition: 'aws' } as const;

export interface TemplateResource {
  Type: string;
  Properties?: Record<string, unknown>;
  Metadata?: Record<string, unknown>;
}
export interface Template {
  Resources: Record<string, TemplateResource>;
  Outputs?: Record<string, { Value: unknown }>;
}
/** Physical ids a test world chooses (a real bucket on Swift, the dynalite table...). */
export type PhysicalOverrides = Readonly<
  Record<string, { readonly ref?: string; readonly attributes?: Readonly<Record<string, string>> }>
>;

/** The optional template sections CloudFormation also reads (not part of the public `Template` shape). */
interface TemplateExtras {
  Parameters?: Record<string, { Default?: unknown }>;
  Conditions?: Record<string, unknown>;
  Mappings?: Record<string, Record<string, Record<string, unknown>>>;
}

/** `AWS::NoValue`: removes the property or list item that holds it. */
const NO_VALUE = Symbol('AWS::NoValue');

interface Physical {
  readonly ref: string;
  readonly attributes: Readonly<Record<string, string>>;
}

export class LocalStack {
  readonly template: Template;
  readonly #overrides: PhysicalOverrides;
  readonly #stackName: string;
  readonly #physical = new Map<string, Physical>();
  readonly #conditions = new Map<string, boolean>();
  #byArn: Map<string, string> | undefined;

  constructor(template: Template, overrides: PhysicalOverrides = {}, stackName = 'VdiVault') {
    this.template = template;
    this.#overrides = overrides;
    this.#stackName = stackName;
  }

  /** Resolves every intrinsic function and pseudo parameter in `value`, deeply. */
  resolve(value: unknown): unknown {
    const resolved = this.#resolve(value);
    return resolved === NO_VALUE ? undefined : resolved;
  }

  ref(logicalId: string): string {
    return this.#physicalOf(logicalId).ref;
  }

  attribute(logicalId: string, name: string): string {
    const value = this.#physicalOf(logicalId).attributes[name];
    if (value === undefined) {
      const type = this.#resource(logicalId).Type;
      throw new Error(`Fn::GetAtt ${logicalId}.${name}: attribute ${name} of ${type} is not modelled`);
    }
    return value;
  }

  arnOf(logicalId: string): string {
    const { ref, attributes } = this.#physicalOf(logicalId);
    const arn = attributes.Arn ?? (ref.startsWith('arn:') ? ref : undefined);
    if (arn === undefined) throw new Error(`${logicalId} (${this.#resource(logicalId).Type}) has no ARN`);
    return arn;
  }

  resourcesOfType(type: string): [string, TemplateResource][] {
    return Object.entries(this.template.Resources).filter(([, resource]) => resource.Type === type);
  }

  /** The resource an ARN names (a log group's ARN with or without its `:*`). */
  logicalIdOfArn(arn: string): string | undefined {
    if (!this.#byArn) {
      this.#byArn = new Map();
      for (const logicalId of Object.keys(this.template.Resources)) {
        const { ref, attributes } = this.#physicalOf(logicalId);
        for (const candidate of [ref, ...Object.values(attributes)]) {
          if (!candidate.startsWith('arn:')) continue;
          this.#byArn.set(candidate, logicalId);
          if (candidate.endsWith(':*')) this.#byArn.set(candidate.slice(0, -2), logicalId);
        }
      }
    }
    return this.#byArn.get(arn);
  }

  #resource(logicalId: string): TemplateResource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new Error(`no resource ${logicalId} in the template`);
    return resource;
  }

  #resolve(value: unknown): unknown {
    if (Array.isArray(value))
      return value.map((item) => this.#resolve(item)).filter((item) => item !== NO_VALUE);
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value);
    if (entries.length === 1) {
      const [key, argument] = entries[0]!;
      if (key === 'Ref' || key.startsWith('Fn::')) return this.#intrinsic(key, argument);
    }
    const out: Record<string, unknown> = {};
    for (const [key, item] of entries) {
      const resolved = this.#resolve(item);
      if (resolved !== NO_VALUE) out[key] = resolved;
    }
    return out;
  }

  #string(value: unknown, where: string): string {
    const resolved = this.#resolve(value);
    if (typeof resolved === 'string') return resolved;
    if (typeof resolved === 'number' || typeof resolved === 'boolean') return String(resolved);
    throw new Error(`${where}: expected a string, got ${JSON.stringify(resolved)}`);
  }

  #list(value: unknown, where: string): unknown[] {
    const resolved = this.#resolve(value);
    if (!Array.isArray(resolved))
      throw new Error(`${where}: expected a list, got ${JSON.stringify(resolved)}`);
    return resolved;
  }

  #intrinsic(name: string, argument: unknown): unknown {
    switch (name) {
      case 'Ref':
        return this.#refOf(this.#string(argument, 'Ref'));
      case 'Fn::GetAtt': {
        const [logicalId, ...path] = Array.isArray(argument)
          ? [this.#string(argument[0], name), this.#string(argument[1], name)]
          : this.#string(argument, name).split('.');
        return this.attribute(logicalId!, path.join('.'));
      }
      case 'Fn::Join': {
        const [delimiter, items] = argument as [unknown, unknown];
        return this.#list(items, name)
          .map((item) => this.#string(item, name))
          .join(this.#string(delimiter, name));
      }
      case 'Fn::Sub': {
        const [text, variables] = Array.isArray(argument) ? argument : [argument, {}];
        const locals = this.#resolve(variables) as Record<string, unknown>;
        return this.#string(text, name).replace(
          /\$\{(!?)([^}]*)\}/g,
          (whole, literal: string, body: string) => {
            if (literal) return `\${${body}}`;
            if (body in locals) return this.#string(locals[body], `${name} \${${body}}`);
            const dot = body.indexOf('.');
            if (dot > 0 && !body.startsWith('AWS::'))
              return this.attribute(body.slice(0, dot), body.slice(dot + 1));
            return this.#string(this.#refOf(body), `${name} ${whole}`);
          },
        );
      }
      case 'Fn::Select': {
        const [index, items] = argument as [unknown, unknown];
        const list = this.#list(items, name);
        const at = Number(this.#string(index, name));
        if (!(at >= 0 && at < list.length))
          throw new Error(`Fn::Select: index ${at} out of ${list.length} items`);
        return list[at];
      }
      case 'Fn::Split': {
        const [delimiter, text] = argument as [unknown, unknown];
        return this.#string(text, name).split(this.#string(delimiter, name));
      }
      case 'Fn::GetAZs':
        return ['a', 'b', 'c', 'd', 'e', 'f'].map((zone) => `${LOCAL_ACCOUNT.region}${zone}`);
      case 'Fn::Base64':
        return Buffer.from(this.#string(argument, name)).toString('base64');
      case 'Fn::FindInMap': {
        const [map, top, second] = this.#list(argument, name).map((part) => this.#string(part, name));
        const value = (this.template as TemplateExtras).Mappings?.[map!]?.[top!]?.[second!];
        if (value === undefined) throw new Error(`Fn::FindInMap: no ${map}.${top}.${second}`);
        return this.#resolve(value);
      }
      case 'Fn::If': {
        const [condition, whenTrue, whenFalse] = argument as [string, unknown, unknown];
        return this.#resolve(this.#condition(condition) ? whenTrue : whenFalse);
      }
      case 'Fn::Equals':
      case 'Fn::And':
      case 'Fn::Or':
      case 'Fn::Not':
        return this.#evaluate({ [name]: argument });
      case 'Fn::ToJsonString':
        return JSON.stringify(this.#resolve(argument));
      default:
        throw new Error(`unsupported intrinsic function ${name} (${JSON.stringify(argument).slice(0, 120)})`);
    }
  }

  #condition(name: string): boolean {
    let value = this.#conditions.get(name);
    if (value === undefined) {
      const definition = (this.template as TemplateExtras).Conditions?.[name];
      if (definition === undefined) throw new Error(`Fn::If: no condition ${name} in the template`);
      value = this.#evaluate(definition);
      this.#conditions.set(name, value);
    }
    return value;
  }

  #evaluate(expression: unknown): boolean {
    const [[operator, operands]] = Object.entries(expression as Record<string, unknown[]>) as [
      [string, unknown[]],
    ];
    switch (operator) {
      case 'Condition':
        return this.#condition(operands as unknown as string);
      case 'Fn::Equals':
        return JSON.stringify(this.#resolve(operands[0])) === JSON.stringify(this.#resolve(operands[1]));
      case 'Fn::And':
        return operands.every((operand) => this.#evaluate(operand));
      case 'Fn::Or':
        return operands.some((operand) => this.#evaluate(operand));
      case 'Fn::Not':
        return !this.#evaluate(operands[0]);
      default:
        throw new Error(`unsupported condition function ${operator}`);
    }
  }

  #refOf(name: string): unknown {
    const { accountId, region, partition } = LOCAL_ACCOUNT;
    switch (name) {
      case 'AWS::AccountId':
        return accountId;
      case 'AWS::Region':
        return region;
      case 'AWS::Partition':
        return partition;
      case 'AWS::URLSuffix':
        return 'amazonaws.com';
      case 'AWS::StackName':
        return this.#stackName;
      case 'AWS::StackId':
        return `arn:${partition}:cloudformation:${region}:${accountId}:stack/${this.#stackName}/${uuid(this.#stackName)}`;
      case 'AWS::NotificationARNs':
        return [];
      case 'AWS::NoValue':
        return NO_VALUE;
    }
    if (name in this.template.Resources) return this.ref(name);
    const parameter = (this.template as TemplateExtras).Parameters?.[name];
    if (parameter) return parameter.Default;
    throw new Error(`Ref ${name}: no such resource, parameter or pseudo parameter`);
  }

  #physicalOf(logicalId: string): Physical {
    let physical = this.#physical.get(logicalId);
    if (!physical) {
      physical = this.#compute(logicalId);
      this.#physical.set(logicalId, physical);
    }
    return physical;
  }

  /** Ref and attributes of one resource, per type: the shapes CloudFormation documents for each. */
  #compute(logicalId: string): Physical {
    const { Type: type, Properties: props = {} } = this.#resource(logicalId);
    const override = this.#overrides[logicalId];
    const { accountId: acct, region, partition: p } = LOCAL_ACCOUNT;
    const explicit = (property: string): string | undefined =>
      props[property] === undefined ? undefined : this.#string(props[property], `${logicalId}.${property}`);
    // The name the resource gets: the override's (parsed out of an ARN or URL when Ref is one), the
    // template's explicit name, or CloudFormation's generated one.
    const named = (property: string | undefined, limit: number, fromRef = (ref: string) => ref): string =>
      override?.ref !== undefined
        ? fromRef(override.ref)
        : ((property && explicit(property)) ?? this.#generatedName(logicalId, limit));
    const afterLast = (separator: string) => (ref: string) => ref.slice(ref.lastIndexOf(separator) + 1);
    const arn = (service: string, resource: string, inRegion = true) =>
      `arn:${p}:${service}:${inRegion ? region : ''}:${service === 's3' ? '' : acct}:${resource}`;
    let ref: string;
    let attributes: Record<string, string>;
    switch (type) {
      case 'AWS::S3::Bucket': {
        const name = named('BucketName', 63).toLowerCase();
        ref = name;
        attributes = {
          Arn: arn('s3', name, false),
          DomainName: `${name}.s3.amazonaws.com`,
          RegionalDomainName: `${name}.s3.${region}.amazonaws.com`,
          WebsiteURL: `http://${name}.s3-website-${region}.amazonaws.com`,
        };
        break;
      }
      case 'AWS::DynamoDB::Table': {
        ref = named('TableName', 255);
        const tableArn = arn('dynamodb', `table/${ref}`);
        attributes = { Arn: tableArn, StreamArn: `${tableArn}/stream/1970-01-01T00:00:00.000` };
        break;
      }
      case 'AWS::IAM::Role': {
        ref = named('RoleName', 64);
        attributes = {
          Arn: arn('iam', `role${explicit('Path') ?? '/'}${ref}`, false),
          RoleId: awsId('AROA', logicalId),
        };
        break;
      }
      case 'AWS::IAM::ManagedPolicy': {
        const name = named('ManagedPolicyName', 128, afterLast('/'));
        ref = arn('iam', `policy${explicit('Path') ?? '/'}${name}`, false);
        attributes = { PolicyArn: ref };
        break;
      }
      case 'AWS::IAM::InstanceProfile': {
        ref = named('InstanceProfileName', 128);
        attributes = { Arn: arn('iam', `instance-profile${explicit('Path') ?? '/'}${ref}`, false) };
        break;
      }
      case 'AWS::Lambda::Function': {
        ref = named('FunctionName', 64, afterLast(':'));
        attributes = { Arn: arn('lambda', `function:${ref}`) };
        break;
      }
      case 'AWS::StepFunctions::StateMachine': {
        const name = named('StateMachineName', 80, afterLast(':'));
        ref = arn('states', `stateMachine:${name}`);
        attributes = { Arn: ref, Name: name, StateMachineRevisionId: ref };
        break;
      }
      case 'AWS::KMS::Key': {
        ref = override?.ref ?? uuid(`${this.#stackName}/${logicalId}`);
        attributes = { Arn: arn('kms', `key/${ref}`), KeyId: ref };
        break;
      }
      case 'AWS::KMS::Alias': {
        ref = named('AliasName', 256);
        attributes = {};
        break;
      }
      case 'AWS::SNS::Topic': {
        const name = named('TopicName', 256, afterLast(':'));
        ref = arn('sns', name);
        attributes = { TopicArn: ref, TopicName: name };
        break;
      }
      case 'AWS::SQS::Queue': {
        const name = named('QueueName', 80, afterLast('/'));
        ref = `https://sqs.${region}.amazonaws.com/${acct}/${name}`;
        attributes = { Arn: arn('sqs', name), QueueName: name, QueueUrl: ref };
        break;
      }
      case 'AWS::Logs::LogGroup': {
        ref = named('LogGroupName', 512);
        attributes = { Arn: arn('logs', `log-group:${ref}:*`) };
        break;
      }
      case 'AWS::ECS::Cluster': {
        ref = named('ClusterName', 255);
        attributes = { Arn: arn('ecs', `cluster/${ref}`) };
        break;
      }
      case 'AWS::ECS::TaskDefinition': {
        const family = named('Family', 255, (given) => afterLast('/')(given).split(':')[0]!);
        ref = arn('ecs', `task-definition/${family}:1`);
        attributes = { TaskDefinitionArn: ref };
        break;
      }
      case 'AWS::Events::Rule': {
        ref = named('Name', 64);
        const bus = explicit('EventBusName');
        attributes = { Arn: arn('events', `rule/${bus && bus !== 'default' ? `${bus}/` : ''}${ref}`) };
        break;
      }
      case 'AWS::Events::EventBus': {
        ref = named('Name', 256);
        attributes = { Arn: arn('events', `event-bus/${ref}`), Name: ref };
        break;
      }
      case 'AWS::Scheduler::Schedule': {
        ref = named('Name', 64);
        attributes = { Arn: arn('scheduler', `schedule/${explicit('GroupName') ?? 'default'}/${ref}`) };
        break;
      }
      case 'AWS::Scheduler::ScheduleGroup': {
        ref = named('Name', 64);
        attributes = { Arn: arn('scheduler', `schedule-group/${ref}`) };
        break;
      }
      case 'AWS::CloudWatch::Alarm': {
        ref = named('AlarmName', 255);
        attributes = { Arn: arn('cloudwatch', `alarm:${ref}`) };
        break;
      }
      case 'AWS::SecretsManager::Secret': {
        const name = named('Name', 256, (given) => afterLast(':')(given).replace(/-[A-Za-z0-9]{6}$/, ''));
        ref = override?.ref ?? arn('secretsmanager', `secret:${name}-${suffix(logicalId, 6)}`);
        attributes = { Id: ref };
        break;
      }
      case 'AWS::EC2::VPC':
        ref = override?.ref ?? awsId('vpc-', logicalId);
        attributes = {
          VpcId: ref,
          CidrBlock: explicit('CidrBlock') ?? '10.0.0.0/16',
          DefaultSecurityGroup: awsId('sg-', `${logicalId}/default`),
        };
        break;
      case 'AWS::EC2::Subnet':
        ref = override?.ref ?? awsId('subnet-', logicalId);
        attributes = { SubnetId: ref, AvailabilityZone: explicit('AvailabilityZone') ?? `${region}a` };
        break;
      case 'AWS::EC2::SecurityGroup':
        ref = override?.ref ?? awsId('sg-', logicalId);
        attributes = { GroupId: ref, VpcId: explicit('VpcId') ?? '' };
        break;
      default: {
        const prefix = EC2_PREFIXES[type];
        ref = override?.ref ?? (prefix ? awsId(prefix, logicalId) : this.#generatedName(logicalId, 64));
        attributes = {};
      }
    }
    return { ref, attributes: { ...attributes, ...override?.attributes } };
  }

  /** CloudFormation's generated name: `<stack>-<logical id, truncated>-<stable suffix>`. */
  #generatedName(logicalId: string, limit: number): string {
    const tail = `-${suffix(`${this.#stackName}/${logicalId}`, 6)}`;
    return `${this.#stackName}-${logicalId}`.slice(0, limit - tail.length) + tail;
  }
}

const EC2_PREFIXES: Readonly<Record<string, string>> = {
  'AWS::EC2::InternetGateway': 'igw-',
  'AWS::EC2::RouteTable': 'rtb-',
  'AWS::EC2::FlowLog': 'fl-',
  'AWS::EC2::NatGateway': 'nat-',
  'AWS::EC2::EIP': 'eipalloc-',
  'AWS::EC2::VPCEndpoint': 'vpce-',
};

function digest(seed: string): Buffer {
  return createHash('sha256').update(seed).digest();
}

/** `length` stable upper-case alphanumerics derived from `seed`. */
function suffix(seed: string, length: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return [...digest(seed).subarray(0, length)].map((byte) => alphabet[byte % alphabet.length]).join('');
}

function uuid(seed: string): string {
  const hex = digest(seed).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

function awsId(prefix: string, seed: string): string {
  return prefix.endsWith('-')
    ? `${prefix}${digest(seed).toString('hex').slice(0, 17)}`
    : `${prefix}${suffix(seed, 17)}`;
}
