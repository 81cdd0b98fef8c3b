import { deployLocally, type LocalDeployment } from './local-deployment.ts';
import type { LocalTarget } from './local-target.ts';

const deployments = new WeakMap<LocalTarget, Promise<LocalDeployment>>();

/** The target's local deployment, started on first use and reused by every run against the same target. */
export function localDeploymentOf(target: LocalTarget): Promise<LocalDeployment> {
  let deployment = deployments.get(target);
  if (!deployment) {
    deployment = deployLocally(target);
    deployments.set(target, deployment);
    // A failed start is not cached: the next run tries again and reports its own error.
    deployment.catch(() => deployments.delete(target));
  }
  return deployment;
}

/** Stops the target's deployment (workers, gateway, servers); a no-op when none was started. */
export async function closeLocalDeployment(target: LocalTarget): Promise<void> {
  const deployment = deployments.get(target);
  deployments.delete(target);
  await (await deployment?.catch(() => undefined))?.close();
}
