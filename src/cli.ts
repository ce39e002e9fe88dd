// The operator's command line. Today one command:
//   node src/cli.ts audit verify --since <RFC3339|duration> [--until …] [--chain <chainId>]
// It reads Elasticsearch with the operator's own ELASTICSEARCH_URL and
// ELASTICSEARCH_API_KEY. Exit codes: 0 intact, 1 a broken or missing link,
// 2 a usage or configuration error, 3 Elasticsearch could not be read.
import { ElasticsearchAuditIndex } from './audit/elasticsearch-sink.ts';
import { auditVerify, parseVerifyArgs, UsageError, VERIFY_USAGE } from './audit/verify.ts';
import { ConfigErrors, loadElasticsearchConfig } from './config.ts';

async function main(argv: readonly string[]): Promise<number> {
  const [group, command, ...rest] = argv;
  if (group !== 'audit' || command !== 'verify') {
    process.stderr.write(`${VERIFY_USAGE}\n`);
    return 2;
  }
  let args;
  let config;
  try {
    args = parseVerifyArgs(rest, new Date());
    config = loadElasticsearchConfig();
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof ConfigErrors)) throw error;
    process.stderr.write(`${error.message}\n${error instanceof UsageError ? `${VERIFY_USAGE}\n` : ''}`);
    return 2;
  }
  const index = new ElasticsearchAuditIndex({ url: config.elasticsearchUrl, apiKey: config.elasticsearchApiKey, requestTimeoutMs: 30_000 });
  try {
    return await auditVerify(args, index, (line) => process.stdout.write(`${line}\n`));
  } catch (error) {
    process.stderr.write(`Could not read the audit trail from Elasticsearch: ${(error as Error).message}\n`);
    return 3;
  } finally {
    await index.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
