import type { Template } from 'aws-cdk-lib/assertions';
import { METRIC_NAMESPACE } from '../../lambdas/runtime/metric-table.ts';

/** What a dashboard widget names in our namespace: a metric and its dimensions (values; `*` in a search). */
export interface NamedMetric {
  readonly name: string;
  readonly dimensions: Readonly<Record<string, string>>;
}

export interface DashboardBody {
  readonly widgets: readonly {
    readonly type: string;
    readonly properties: {
      readonly title?: string;
      readonly markdown?: string;
      readonly metrics?: readonly unknown[][];
      readonly annotations?: { readonly horizontal?: readonly { value: number; label?: string }[] };
    };
  }[];
}

/** The dashboard's body, its tokens (`Ref`, `GetAtt`…) written as `<Ref:Id>` so it parses as JSON. */
export function dashboardBody(template: Template): DashboardBody {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  if (dashboards.length !== 1) throw new Error(`${dashboards.length} dashboards`);
  const body = (dashboards[0]!.Properties as { DashboardBody: unknown }).DashboardBody;
  const text =
    typeof body === 'string'
      ? body
      : (body as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1]
          .map((part) => (typeof part === 'string' ? part : tokenText(part)))
          .join('');
  return JSON.parse(text) as DashboardBody;
}

function tokenText(token: unknown): string {
  const object = token as Record<string, unknown>;
  if ('Ref' in object) return `<Ref:${String(object.Ref)}>`;
  if ('Fn::GetAtt' in object) return `<GetAtt:${(object['Fn::GetAtt'] as string[]).join('.')}>`;
  return '<token>';
}

/**
 * Every metric of our namespace the dashboard names: metric arrays (`[namespace, name, key, value, …,
 * {options}]`, a `"."` repeating the row above) and `SEARCH('{namespace,keys…} MetricName="…"')`
 * expressions, whose dimensions match any value (`*`).
 */
export function namedMetrics(body: DashboardBody): NamedMetric[] {
  const named: NamedMetric[] = [];
  for (const widget of body.widgets) {
    let previous: unknown[] = [];
    for (const row of widget.properties.metrics ?? []) {
      const fields = row.filter((field) => typeof field === 'string') as string[];
      const options = row.find((field) => typeof field === 'object') as { expression?: string } | undefined;
      if (options?.expression !== undefined) {
        for (const match of options.expression.matchAll(/SEARCH\('\{([^}]*)\} MetricName="([^"]+)"/g)) {
          const [namespace, ...keys] = match[1]!.split(',');
          if (namespace === METRIC_NAMESPACE) {
            named.push({ name: match[2]!, dimensions: Object.fromEntries(keys.map((key) => [key, '*'])) });
          }
        }
        continue;
      }
      const resolved = fields.map((field, index) => (field === '.' ? String(previous[index]) : field));
      previous = resolved;
      const [namespace, name, ...pairs] = resolved;
      if (namespace !== METRIC_NAMESPACE || name === undefined) continue;
      const dimensions: Record<string, string> = {};
      for (let index = 0; index + 1 < pairs.length; index += 2) dimensions[pairs[index]!] = pairs[index + 1]!;
      named.push({ name, dimensions });
    }
  }
  return named;
}
