#!/usr/bin/env node
// A `solc` command line backed by solcjs (npm `solc`), for machines where no native solc can be
// downloaded (see README "Offline compiler"). It answers the two calls our tools make:
//   --version                           (py-solc-x, Slither)
//   --standard-json [--base-path P] [--allow-paths P] [--include-path P]  (ape-solidity, Slither)
// Standard-JSON input is read from stdin; output JSON goes to stdout via a file descriptor write,
// because Node truncates large stdout writes to a pipe when the process exits.
'use strict';
const fs = require('fs');
const path = require('path');

const projectRoot = path.resolve(__dirname, '..');
const solc = require(path.join(projectRoot, 'node_modules', 'solc'));

const args = process.argv.slice(2);
function optionValues(name) {
  const values = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name && i + 1 < args.length) values.push(args[i + 1]);
    else if (args[i].startsWith(name + '=')) values.push(args[i].slice(name.length + 1));
  }
  return values;
}

function writeAll(text) {
  const buffer = Buffer.from(text);
  let offset = 0;
  while (offset < buffer.length) offset += fs.writeSync(1, buffer, offset);
}

if (args.includes('--version')) {
  writeAll('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wrapper: only --version and --standard-json are supported (got: ' + args.join(' ') + ')\n');
  process.exit(2);
}

// Where imports may be found: the base path, allow paths (Slither passes those), include paths,
// the current directory and the project's node_modules (for @openzeppelin/...).
const roots = [
  ...optionValues('--base-path'),
  ...optionValues('--allow-paths').flatMap((p) => p.split(',')),
  ...optionValues('--include-path'),
  process.cwd(),
  path.join(projectRoot, 'node_modules'),
].filter(Boolean).map((p) => path.resolve(p));

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.join(r, importPath));
  for (const candidate of candidates) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    }
  }
  return { error: 'File not found: ' + importPath + ' (searched ' + roots.join(', ') + ')' };
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
// Sources given by URL (path) only: load them the same way as imports.
for (const [name, source] of Object.entries(input.sources || {})) {
  if (source.content === undefined && Array.isArray(source.urls)) {
    for (const url of source.urls) {
      const found = findImports(url);
      if (found.contents !== undefined) { source.content = found.contents; delete source.urls; break; }
    }
  }
}
writeAll(solc.compile(JSON.stringify(input), { import: findImports }));
