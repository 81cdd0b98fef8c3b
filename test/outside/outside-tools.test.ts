// The outside readers are required: without them the run stops, naming the packages to install.
import { describe, expect, it } from 'vitest';
import { missingOutsideTools, requireOutsideTools } from '../world/outside-tools.ts';

describe('outside readers', () => {
  it('are all present on this machine (npm test installs them)', () => {
    expect(missingOutsideTools().map((tool) => tool.name)).toEqual([]);
    expect(() => requireOutsideTools()).not.toThrow();
  });

  it('a missing qemu-img stops the run with the package to install, never a skip', () => {
    const withoutPath = { ...process.env, PATH: '/nonexistent' };
    // libvhdi runs by absolute path (Debian's python3), so only qemu-img goes missing here.
    expect(missingOutsideTools(withoutPath).map((tool) => tool.debianPackage)).toEqual(['qemu-utils']);
    expect(() => requireOutsideTools(withoutPath)).toThrow(
      /qemu-img.*sudo apt-get install --no-install-recommends qemu-utils/,
    );
  });
});
