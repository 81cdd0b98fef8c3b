/**
 * The XAPI simulator in its own process for the export measurements, so its CPU and memory are not
 * counted with the export under test. `node bench/sim-server.ts NAME=SIZE…` adds one generated disk
 * (every block present, content made on demand: no memory cost) per argument, prints one JSON line
 * `{"url","username","password","vdis":{NAME:{"uuid","virtualSize"}}}` and serves until SIGTERM or until
 * its stdin closes.
 */
import { parseSize } from '../world/xapi-simulator/cli-args.ts';
import { startXapiSimulator } from '../world/xapi-simulator/index.ts';

const sim = await startXapiSimulator();
const vdis: Record<string, { uuid: string; virtualSize: number }> = {};
for (const [index, spec] of process.argv.slice(2).entries()) {
  const [name, size] = spec.split('=');
  if (!name || !size) throw new Error(`expected NAME=SIZE, got ${spec}`);
  const virtualSize = parseSize(size);
  const vdi = sim.addVdi({ virtualSize, nameLabel: `bench ${name}`, populate: 'generated', seed: index + 1 });
  vdis[name] = { uuid: vdi.uuid, virtualSize };
}
process.stdout.write(
  `${JSON.stringify({ url: sim.url, username: sim.username, password: sim.password, vdis })}\n`,
);
const stop = (): void => void sim.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The bench holds our stdin open: if it dies without stopping us (a crash, SIGKILL), the pipe closes.
process.stdin.on('end', stop).on('error', stop).resume();
