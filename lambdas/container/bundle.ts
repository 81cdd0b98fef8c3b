/**
 * Bundles the transfer container's entrypoint into one ESM file, the AWS SDK and every dependency inside
 * (no node_modules in the image). The Dockerfile runs it; so does the local world, which runs the same
 * bundle as the Fargate task would. Usage: `node lambdas/container/bundle.ts <outfile>`.
 */
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

export async function bundleContainer(outfile: string): Promise<void> {
  await build({
    entryPoints: [fileURLToPath(new URL('./main.ts', import.meta.url))],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    minify: true,
    // Error names are what the workflows catch and operators read.
    keepNames: true,
    mainFields: ['module', 'main'],
    // undici's experimental Milo parser loads only when UNDICI_USE_MILO is set (we never set it).
    external: ['./node_modules/undici/lib/milo/*'],
    // ESM bundles of CommonJS dependencies need a require().
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
    logLevel: 'warning',
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outfile = process.argv[2];
  if (!outfile) {
    process.stderr.write('usage: node lambdas/container/bundle.ts <outfile>\n');
    process.exit(2);
  }
  await bundleContainer(outfile);
}
