/** A minimal XML element tree: enough for XML-RPC requests (no namespaces, no DTDs). */
export interface XmlElement {
  readonly name: string;
  readonly children: XmlElement[];
  text: string;
}

export class XmlSyntaxError extends Error {}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (whole, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(Number.parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(Number.parseInt(entity.slice(1), 10));
    return ENTITIES[entity] ?? whole;
  });
}

export function encodeEntities(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function parseXml(source: string): XmlElement {
  const root: XmlElement = { name: '#document', children: [], text: '' };
  const stack: XmlElement[] = [root];
  let position = 0;
  while (position < source.length) {
    const open = source.indexOf('<', position);
    const textEnd = open < 0 ? source.length : open;
    if (textEnd > position) stack.at(-1)!.text += decodeEntities(source.slice(position, textEnd));
    if (open < 0) break;
    if (source.startsWith('<?', open)) {
      position = skipPast(source, '?>', open);
    } else if (source.startsWith('<!--', open)) {
      position = skipPast(source, '-->', open);
    } else if (source.startsWith('<![CDATA[', open)) {
      const end = source.indexOf(']]>', open);
      if (end < 0) throw new XmlSyntaxError('unterminated CDATA');
      stack.at(-1)!.text += source.slice(open + 9, end);
      position = end + 3;
    } else if (source.startsWith('<!', open)) {
      position = skipPast(source, '>', open);
    } else if (source.startsWith('</', open)) {
      const end = skipPast(source, '>', open);
      const name = source.slice(open + 2, end - 1).trim();
      const current = stack.pop();
      if (current === undefined || current.name !== name || stack.length === 0) {
        throw new XmlSyntaxError(`unexpected </${name}>`);
      }
      position = end;
    } else {
      const end = skipPast(source, '>', open);
      const inner = source.slice(open + 1, end - 1);
      const selfClosing = inner.endsWith('/');
      const name = (selfClosing ? inner.slice(0, -1) : inner).trim().split(/\s+/)[0] ?? '';
      if (name === '') throw new XmlSyntaxError('empty tag name');
      const element: XmlElement = { name, children: [], text: '' };
      stack.at(-1)!.children.push(element);
      if (!selfClosing) stack.push(element);
      position = end;
    }
  }
  if (stack.length !== 1) throw new XmlSyntaxError(`unclosed <${stack.at(-1)!.name}>`);
  return root;
}

function skipPast(source: string, marker: string, from: number): number {
  const end = source.indexOf(marker, from);
  if (end < 0) throw new XmlSyntaxError(`expected ${marker}`);
  return end + marker.length;
}
