import { dispatch } from './method-table.ts';
import type { CallContext, MethodTable } from './method-table.ts';
import { XapiDateTime, XapiFloat } from './rpc-values.ts';
import type { XapiValue } from './rpc-values.ts';
import { XapiError, asXapiError } from './xapi-error.ts';
import { encodeEntities, parseXml } from './xml-parse.ts';
import type { XmlElement } from './xml-parse.ts';

/**
 * `POST /` and `/RPC2`: the result is always the struct `{Status:"Success",Value}` or
 * `{Status:"Failure",ErrorDescription:[CODE,...params]}`, with HTTP 200. As in xapi, strings and 64-bit
 * ints are written untyped (`<value>123</value>`); booleans, floats and datetimes are typed.
 */
export function handleXmlRpc(table: MethodTable, ctx: Omit<CallContext, 'session'>, body: string): string {
  let result: XapiValue;
  try {
    const { method, params } = parseMethodCall(body);
    result = { Status: 'Success', Value: dispatch(table, ctx, method, params) };
  } catch (thrown) {
    result = { Status: 'Failure', ErrorDescription: asXapiError(thrown).description };
  }
  return (
    '<?xml version="1.0"?><methodResponse><params><param>' +
    encodeValue(result) +
    '</param></params></methodResponse>'
  );
}

export function encodeValue(value: XapiValue): string {
  if (typeof value === 'string') return `<value>${encodeEntities(value)}</value>`;
  if (typeof value === 'number') return `<value>${value}</value>`; // 64-bit int: untyped string
  if (typeof value === 'boolean') return `<value><boolean>${value ? 1 : 0}</boolean></value>`;
  if (value instanceof XapiFloat) return `<value><double>${value.value}</double></value>`;
  if (value instanceof XapiDateTime)
    return `<value><dateTime.iso8601>${value.value}</dateTime.iso8601></value>`;
  if (Array.isArray(value)) {
    return `<value><array><data>${(value as readonly XapiValue[]).map(encodeValue).join('')}</data></array></value>`;
  }
  const members = Object.entries(value as Record<string, XapiValue>)
    .map(([name, member]) => `<member><name>${encodeEntities(name)}</name>${encodeValue(member)}</member>`)
    .join('');
  return `<value><struct>${members}</struct></value>`;
}

function parseMethodCall(body: string): { method: string; params: unknown[] } {
  let document: XmlElement;
  try {
    document = parseXml(body);
  } catch (error) {
    throw new XapiError('INTERNAL_ERROR', [`XML-RPC request is not XML: ${(error as Error).message}`]);
  }
  const call = document.children.find((element) => element.name === 'methodCall');
  const name = call?.children.find((element) => element.name === 'methodName')?.text.trim();
  if (call === undefined || name === undefined || name === '') {
    throw new XapiError('INTERNAL_ERROR', ['XML-RPC request has no methodCall/methodName']);
  }
  const params = call.children.find((element) => element.name === 'params');
  const values = (params?.children ?? [])
    .filter((element) => element.name === 'param')
    .map((param) => decodeValue(child(param, 'value')));
  return { method: name, params: values };
}

function child(element: XmlElement, name: string): XmlElement {
  const found = element.children.find((candidate) => candidate.name === name);
  if (found === undefined)
    throw new XapiError('INTERNAL_ERROR', [`XML-RPC: <${element.name}> lacks <${name}>`]);
  return found;
}

function decodeValue(value: XmlElement): unknown {
  const typed = value.children[0];
  if (typed === undefined) return value.text; // untyped: a string
  const text = typed.text;
  switch (typed.name) {
    case 'string':
      return text;
    case 'int':
    case 'i4':
    case 'i8':
      return Number.parseInt(text.trim(), 10);
    case 'boolean':
      return text.trim() === '1' || text.trim() === 'true';
    case 'double':
      return Number.parseFloat(text.trim());
    case 'dateTime.iso8601':
      return text.trim();
    case 'base64':
      return Buffer.from(text.trim(), 'base64').toString('latin1');
    case 'nil':
      return null;
    case 'array':
      return child(typed, 'data')
        .children.filter((element) => element.name === 'value')
        .map(decodeValue);
    case 'struct':
      return Object.fromEntries(
        typed.children
          .filter((element) => element.name === 'member')
          .map((member) => [child(member, 'name').text, decodeValue(child(member, 'value'))]),
      );
    default:
      throw new XapiError('INTERNAL_ERROR', [`XML-RPC: unknown type <${typed.name}>`]);
  }
}
