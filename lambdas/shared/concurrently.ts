/**
 * Maps `items` with at most `limit` calls in flight, keeping the order of the results. Catalog reads are
 * many small S3 requests: one at a time, a chain of 1,000 layers costs minutes of a 2-minute Lambda.
 */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** S3 requests a catalog step keeps in flight (the SDK's default socket pool allows 50). */
export const CATALOG_READS_IN_FLIGHT = 16;
