import { UnavailableError } from '../exit-codes.ts';

/** S3 failures while reading the catalog, said in the operator's terms (exit 4). */
export function catalogError(bucket: string) {
  return (error: Error): never => {
    if (error.name === 'NoSuchBucket')
      throw new UnavailableError(`bucket ${bucket} does not exist (check --bucket)`);
    if (error.name === 'CatalogError') throw error;
    throw new UnavailableError(`cannot read the catalog in s3://${bucket}: ${error.name}: ${error.message}`);
  };
}
