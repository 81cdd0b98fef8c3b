/**
 * Standalone simulator: `npm run sim -- --port 0`. Prints exactly one JSON line on stdout,
 * `{"url","memberUrl","username","password","vdis":[{"uuid","srUuid","virtualSize"}]}` (plus "caPem" with
 * --tls), logs to stderr, and serves until SIGINT or SIGTERM, then exits 0. Options: cli-args.ts.
 */
import { parseCliArgs, USAGE } from './cli-args.ts';
import { startXapiSimulator } from './index.ts';

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  const options = parseCliArgs(argv);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const sim = await startXapiSimulator({
    tls: options.tls,
    port: options.port,
    memberPort: options.memberPort,
    username: options.username,
    password: options.password,
    readerStallTimeoutMs: options.readerStallTimeoutMs,
    log,
  });
  const vdi = sim.addVdi({
    virtualSize: options.vdiSize,
    nameLabel: 'demo disk',
    populate: options.populate,
    onMember: options.member,
    seed: 1,
  });
  for (const fault of options.faults) sim.injectFault(fault);
  const ready = {
    url: sim.url,
    memberUrl: sim.memberUrl,
    username: sim.username,
    password: sim.password,
    vdis: [{ uuid: vdi.uuid, srUuid: vdi.srUuid, virtualSize: options.vdiSize }],
    ...(sim.caPem === undefined ? {} : { caPem: sim.caPem }),
  };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  log(
    `xapi simulator: master ${sim.url}, member ${sim.memberUrl}, vdi ${vdi.uuid} (${options.vdiSize} bytes)`,
  );

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log(`xapi simulator: ${signal}, closing`);
    sim.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log(String(error));
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  process.stderr.write(`xapi simulator: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
