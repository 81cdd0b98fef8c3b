/** How a command talks: human lines (colour only on a TTY, never with NO_COLOR) or one JSON document. */
export interface Output {
  readonly json: boolean;
  /** Results: tables, summaries, the JSON document. */
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  /** Progress, steps, hints, errors. */
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  /** Colour for stdout, and for stderr: each only when that stream is a TTY. */
  readonly colour: Colour;
  readonly errColour: Colour;
}

export interface Colour {
  readonly red: (text: string) => string;
  readonly green: (text: string) => string;
  readonly yellow: (text: string) => string;
  readonly dim: (text: string) => string;
  readonly bold: (text: string) => string;
}

const plain: Colour = { red: same, green: same, yellow: same, dim: same, bold: same };

function same(text: string): string {
  return text;
}

function sgr(code: number, reset: number) {
  return (text: string) => `\x1b[${code}m${text}\x1b[${reset}m`;
}

const ansi: Colour = {
  red: sgr(31, 39),
  green: sgr(32, 39),
  yellow: sgr(33, 39),
  dim: sgr(2, 22),
  bold: sgr(1, 22),
};

export function createOutput(
  json: boolean,
  stdout: Output['stdout'] = process.stdout,
  stderr: Output['stderr'] = process.stderr,
  env: NodeJS.ProcessEnv = process.env,
): Output {
  // https://no-color.org: any non-empty NO_COLOR turns colour off.
  const pick = (stream: Output['stdout']) => (!json && stream.isTTY === true && !env.NO_COLOR ? ansi : plain);
  return { json, stdout, stderr, colour: pick(stdout), errColour: pick(stderr) };
}

export function printLine(output: Output, line = ''): void {
  output.stdout.write(line + '\n');
}

/** A note for people (stderr); silent with --json so scripts get only the document. */
export function note(output: Output, line: string): void {
  if (!output.json) output.stderr.write(line + '\n');
}

export function printJson(output: Output, document: unknown): void {
  output.stdout.write(JSON.stringify(document, null, 2) + '\n');
}

export interface Column<Row> {
  readonly title: string;
  readonly value: (row: Row) => string;
  readonly align?: 'left' | 'right';
}

/** A plain-text table: columns padded to their widest cell, two spaces apart. */
export function formatTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): string[] {
  const cells = rows.map((row) => columns.map((column) => column.value(row)));
  const widths = columns.map((column, index) =>
    Math.max(column.title.length, ...cells.map((line) => visibleLength(line[index]!))),
  );
  const pad = (text: string, index: number) => {
    const fill = ' '.repeat(widths[index]! - visibleLength(text));
    return columns[index]!.align === 'right' ? fill + text : text + fill;
  };
  return [
    columns
      .map((column, index) => pad(column.title, index))
      .join('  ')
      .trimEnd(),
    ...cells.map((line) => line.map(pad).join('  ').trimEnd()),
  ];
}

function visibleLength(text: string): number {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}
