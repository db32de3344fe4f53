// Runs the graphql-http server audit against the GraphQL endpoint given as the first
// argument and prints one line per check. Exits 1 if any check errs or warns.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql-endpoint-url>');
  process.exit(2);
}
const results = await auditServer({ url });
let failed = 0;
for (const result of results) {
  const line = `${result.status.toUpperCase().padEnd(5)} ${result.id} ${result.name}`;
  if (result.status === 'ok') {
    console.log(line);
  } else {
    failed += 1;
    console.log(`${line}\n      ${result.reason}`);
  }
}
console.log(`${results.length - failed} of ${results.length} checks passed`);
process.exit(failed ? 1 : 0);
