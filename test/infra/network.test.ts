import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { POOL, synth } from './synth.ts';

const network = {
  vpcId: 'vpc-0123456789abcdef0',
  subnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
};

function stepFunctions(template: ReturnType<typeof synth>['template']) {
  return Object.values(template.findResources('AWS::Lambda::Function')).filter(
    (fn) => fn.Properties.Environment?.Variables?.VDI_VAULT_STEP,
  );
}

describe('VPC placement', () => {
  it('puts every step function in the configured subnets with a new egress-only security group', () => {
    const { template } = synth(
      { pools: [{ ...POOL, url: 'https://xcp.example.com:8443' }], network },
      // cdk-nag included: the VPC access policy is acknowledged only when functions are in a VPC.
    );
    const functions = stepFunctions(template);
    // 29 workflow steps and the hourly restore point ages (SCHEDULED_STEPS).
    expect(functions).toHaveLength(30 + 1);
    for (const fn of functions) {
      expect(fn.Properties.VpcConfig).toEqual({
        SubnetIds: network.subnetIds,
        SecurityGroupIds: [{ 'Fn::GetAtt': [expect.stringMatching(/^FunctionSecurityGroup/), 'GroupId'] }],
      });
    }
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      VpcId: network.vpcId,
      SecurityGroupEgress: [
        Match.objectLike({ IpProtocol: 'tcp', FromPort: 443, ToPort: 443, CidrIp: '0.0.0.0/0' }),
        Match.objectLike({ IpProtocol: 'tcp', FromPort: 8443, ToPort: 8443, CidrIp: '0.0.0.0/0' }),
      ],
    });
  });

  it('uses a configured security group as is', () => {
    const { template } = synth(
      { pools: [POOL], network: { ...network, securityGroupId: 'sg-0123456789abcdef0' } },
      { nagChecks: false },
    );
    template.resourceCountIs('AWS::EC2::SecurityGroup', 0);
    for (const fn of stepFunctions(template)) {
      expect(fn.Properties.VpcConfig.SecurityGroupIds).toEqual(['sg-0123456789abcdef0']);
    }
  });

  it('leaves the functions outside any VPC when none is configured', () => {
    const { template } = synth({ pools: [POOL] }, { nagChecks: false });
    // Only the Fargate transfer task gets a network of its own (it can't run without one).
    template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: 'vdi-vault transfer tasks: HTTPS to the pools and AWS APIs, nothing else',
    });
    for (const fn of stepFunctions(template)) expect(fn.Properties.VpcConfig).toBeUndefined();
  });
});
