import { describe, expect, it } from 'vitest';
import { masterUrlFrom } from '../../lambdas/xapi/index.ts';

describe('masterUrlFrom', () => {
  it('keeps the scheme and port of the member URL when XAPI reports a bare address', () => {
    expect(masterUrlFrom('https://10.0.0.2', '10.0.0.1')).toBe('https://10.0.0.1');
    expect(masterUrlFrom('https://member:8443', '10.0.0.1')).toBe('https://10.0.0.1:8443');
  });
  it('takes a port when the address carries one, and brackets IPv6', () => {
    expect(masterUrlFrom('http://127.0.0.1:1000', '127.0.0.1:2000')).toBe('http://127.0.0.1:2000');
    expect(masterUrlFrom('https://[fd00::2]', 'fd00::1')).toBe('https://[fd00::1]');
  });
});
