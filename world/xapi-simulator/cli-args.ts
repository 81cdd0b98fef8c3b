import type { Fault } from './faults.ts';

export interface CliOptions {
  port: number;
  memberPort: number;
  tls: boolean;
  member: boolean;
  /** --vdi-size; undefined when not given: 256 MiB, or with --vdi-image the image file's size. */
  vdiSize: number | undefined;
  populate: 'none' | 'scattered' | 'generated';
  /** --image-format; undefined: the SR's preference (vhd), qcow2 over 2040 GiB. */
  imageFormat: CliImageFormat | undefined;
  /** --vdi-image: a raw image file whose content the seeded VDI gets (main.ts reads and checks it). */
  vdiImage: string | undefined;
  username: string | undefined;
  password: string | undefined;
  readerStallTimeoutMs: number | undefined;
  faults: Fault[];
}

export const CLI_IMAGE_FORMATS = ['vhd', 'qcow2'] as const;
export type CliImageFormat = (typeof CLI_IMAGE_FORMATS)[number];

/** The seeded VDI's size when neither --vdi-size nor --vdi-image gives one. */
export const DEFAULT_VDI_SIZE = 256 * 1024 ** 2;

export const USAGE = `usage: npm run sim -- [options]
  --port N                 master port (default 0: any free port)
  --member-port N          member port (default 0)
  --tls                    HTTPS with a self-signed certificate (printed as caPem)
  --member                 put the seeded VDI on the member's local SR (the master redirects)
  --vdi-size SIZE          seeded VDI size: bytes or 256MiB, 1GiB, 3TiB, ... (default 256MiB, or the
                           --vdi-image file's size; with --vdi-image at least that, the rest reads as zeros)
  --image-format FORMAT    the seeded VDI's image format: vhd | qcow2 (default: the SR's, vhd; qcow2 over
                           2040 GiB; vhd holds at most 2040 GiB)
  --vdi-image FILE         the seeded VDI's content from a raw image file (its size a positive multiple of
                           512 bytes); all-zero 2 MiB blocks stay unallocated
  --populate MODE          scattered (default) | generated (every block) | none (the only one, and the
                           default, with --vdi-image)
  --username U --password P
  --reader-stall-timeout MS
faults (each may repeat):
  --fault JSON             any fault of faults.ts, e.g. '{"kind":"stall","ms":5000,"afterBytes":1048576,"times":1}'
  --fail-login CODE        session.login_with_password fails with CODE
  --method-fault M=CODE    RPC method M fails with CODE (e.g. VDI.snapshot=SR_FULL)
  --drop-after N           transfers are cut after N body bytes
  --stall MS[@N]           transfers stall MS milliseconds after N body bytes (default 0)
  --fail-task-after-body CODE
  --corrupt-at N           the body byte at offset N is flipped
  --http500-after N        an HTTP/1.1 500 response is written into the body after N bytes
  --throttle BYTES_PER_S`;

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  KIB: 1024,
  M: 1024 ** 2,
  MIB: 1024 ** 2,
  G: 1024 ** 3,
  GIB: 1024 ** 3,
  T: 1024 ** 4,
  TIB: 1024 ** 4,
};

/** `268435456`, `256MiB`, `1GiB`, `1G`: binary units. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = UNITS[(match?.[2] ?? '?').toUpperCase()];
  if (match === null || unit === undefined) throw new Error(`not a size: ${text}`);
  const bytes = Math.round(Number(match[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 512 !== 0) {
    throw new Error(`a disk size must be a positive multiple of 512 bytes: ${text}`);
  }
  return bytes;
}

function integer(text: string | undefined, flag: string): number {
  if (text === undefined || !/^\d+$/.test(text)) throw new Error(`${flag} needs a non-negative integer`);
  return Number(text);
}

export function parseCliArgs(argv: readonly string[]): CliOptions {
  const options: CliOptions = {
    port: 0,
    memberPort: 0,
    tls: false,
    member: false,
    vdiSize: undefined,
    populate: 'scattered',
    imageFormat: undefined,
    vdiImage: undefined,
    username: undefined,
    password: undefined,
    readerStallTimeoutMs: undefined,
    faults: [],
  };
  let populateGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${flag} needs a value`);
      return next;
    };
    switch (flag) {
      case '--port':
        options.port = integer(value(), flag);
        break;
      case '--member-port':
        options.memberPort = integer(value(), flag);
        break;
      case '--tls':
        options.tls = true;
        break;
      case '--member':
        options.member = true;
        break;
      case '--vdi-size':
        options.vdiSize = parseSize(value());
        break;
      case '--populate': {
        const mode = value();
        if (mode !== 'none' && mode !== 'scattered' && mode !== 'generated')
          throw new Error(`bad --populate ${mode}`);
        options.populate = mode;
        populateGiven = true;
        break;
      }
      case '--image-format': {
        const format = value();
        if (!(CLI_IMAGE_FORMATS as readonly string[]).includes(format)) {
          throw new Error(`--image-format must be ${CLI_IMAGE_FORMATS.join(' or ')}, got ${format}`);
        }
        options.imageFormat = format as CliImageFormat;
        break;
      }
      case '--vdi-image': {
        const file = value();
        if (file === '') throw new Error('--vdi-image needs a file name');
        options.vdiImage = file;
        break;
      }
      case '--username':
        options.username = value();
        break;
      case '--password':
        options.password = value();
        break;
      case '--reader-stall-timeout':
        options.readerStallTimeoutMs = integer(value(), flag);
        break;
      case '--fault':
        options.faults.push(JSON.parse(value()) as Fault);
        break;
      case '--fail-login':
        options.faults.push({ kind: 'rpc-error', method: 'session.login_with_password', code: value() });
        break;
      case '--method-fault': {
        const [method, code] = value().split('=');
        if (method === undefined || code === undefined || code === '')
          throw new Error('--method-fault M=CODE');
        options.faults.push({ kind: 'rpc-error', method, code });
        break;
      }
      case '--drop-after':
        options.faults.push({ kind: 'drop-connection', afterBytes: integer(value(), flag) });
        break;
      case '--stall': {
        const [ms, after] = value().split('@');
        options.faults.push({
          kind: 'stall',
          ms: integer(ms, flag),
          afterBytes: after === undefined ? 0 : integer(after, flag),
        });
        break;
      }
      case '--fail-task-after-body':
        options.faults.push({ kind: 'fail-task-after-body', code: value() });
        break;
      case '--corrupt-at':
        options.faults.push({ kind: 'corrupt-byte', offset: integer(value(), flag) });
        break;
      case '--http500-after':
        options.faults.push({ kind: 'http-500-in-body', afterBytes: integer(value(), flag) });
        break;
      case '--throttle':
        options.faults.push({ kind: 'throttle', bytesPerSecond: parseSize(value()) });
        break;
      default:
        throw new Error(`unknown option ${flag}\n${USAGE}`);
    }
  }
  if (options.vdiImage !== undefined) {
    // The image is the content: a populate mode would overwrite it.
    if (populateGiven && options.populate !== 'none') {
      throw new Error(`--populate ${options.populate} cannot be used with --vdi-image (only none)`);
    }
    options.populate = 'none';
  }
  return options;
}
