#!/usr/bin/env node
// A `solc` executable over the bundled solc-js releases, for tools that call solc on the command line
// (crytic-compile, hence Slither: training_pipeline.data.weak_labels).
//
//   solc_bridge.js --version          prints "Version: <x.y.z>" of the release it would use
//   solc_bridge.js --standard-json    reads standard-JSON input on stdin, prints solc's standard-JSON output
//
// The release: $SCATHAT_SOLC_VERSION (an exact bundled version, e.g. 0.4.26) when set; otherwise, for
// --standard-json, the oldest bundled release that every `pragma solidity` of the input allows (an exact
// pragma whose release is not bundled is relaxed to a caret of the same minor; no pragma -> 0.4.26);
// for --version without the variable, 0.4.26. $SCATHAT_SOLC_PATH, when set, is the folder of a solc-js
// package to load instead (any release, e.g. ~/.cache/scathat/solc/0.6.6/node_modules/solc): its
// package.json version is the release (and must equal $SCATHAT_SOLC_VERSION when both are set).
// Other arguments (--allow-paths DIR, ...) are accepted; imports and `urls` sources are read from the file
// system relative to the working directory (crytic-compile's working dir: e.g. an npm prefix's
// node_modules, so `@scope/pkg/...` and relative imports of files under it resolve).
// Nothing but the answer reaches stdout: console output of the compilers is rerouted to stderr.
'use strict';

const fs = require('fs');
const path = require('path');

const { bundledAliases, claimStdout } = require('./solc_common');

const writeOut = claimStdout();

const VERSION_ENV = 'SCATHAT_SOLC_VERSION';
const PATH_ENV = 'SCATHAT_SOLC_PATH';
const INCLUDE_ENV = 'SCATHAT_SOLC_INCLUDE'; // more folders (path-delimiter separated) package imports are read from
const DEFAULT_VERSION = '0.4.26'; // pragma-less code is mostly pre-0.5 era
const ALIASES = bundledAliases(); // "0.8.26" -> "solc-0826"
const BUNDLED = Object.keys(ALIASES).sort((a, b) => cmp(a, b));

function cmp(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

function fail(message, code = 1) {
  process.stderr.write(`solc_bridge: ${message}\n`);
  process.exit(code);
}

// `pragma solidity <range>;` constraints, comments and strings blanked out first.
function pragmas(source) {
  const code = source.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g, ' ');
  const found = [];
  const re = /\bpragma\s+solidity\s+([^;]+);/g;
  let m;
  while ((m = re.exec(code)) !== null) {
    // `^ 0.4 .6` is a range solc accepts: close up the spaces semver would stumble on
    found.push(m[1].trim().replace(/(\^|~|>=|<=|>|<|=)\s+/g, '$1').replace(/(\d)\s*\.\s*(?=\d)/g, '$1.'));
  }
  return found;
}

function relaxExact(constraint) {
  const m = /^=?\s*(\d+\.\d+\.\d+)$/.exec(constraint);
  return m && !ALIASES[m[1]] ? `^${m[1]}` : constraint;
}

function pickVersion(sources) {
  const semver = require('semver');
  const constraints = sources.flatMap(pragmas).map(relaxExact);
  if (!constraints.length) return DEFAULT_VERSION;
  const ok = BUNDLED.filter((v) => constraints.every((c) => semver.validRange(c) && semver.satisfies(v, c)));
  if (!ok.length) fail(`no bundled solc (${BUNDLED.join(', ')}) satisfies pragma ${constraints.join(' and ')}`);
  return ok[0];
}

// The solc-js package folder of $SCATHAT_SOLC_PATH and its release, or null when the variable is unset.
function envPackage() {
  const dir = process.env[PATH_ENV];
  if (!dir) return null;
  let version;
  try {
    version = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).version;
  } catch (e) {
    fail(`${PATH_ENV}=${dir} is not a solc-js package folder (no readable package.json)`, 2);
  }
  const wanted = process.env[VERSION_ENV];
  if (wanted && wanted !== version) fail(`${PATH_ENV}=${dir} holds solc ${version}, not ${VERSION_ENV}=${wanted}`, 2);
  return { dir: path.resolve(dir), version };
}

function envVersion() {
  const pkg = envPackage();
  if (pkg) return pkg.version;
  const v = process.env[VERSION_ENV];
  if (v && !ALIASES[v]) fail(`${VERSION_ENV}=${v} is not a bundled solc-js release (${BUNDLED.join(', ')})`, 2);
  return v || null;
}

// A source by name: relative to the working directory, else (a package path such as `@scope/pkg/X.sol`)
// under each $SCATHAT_SOLC_INCLUDE folder in turn.
function readFile(file) {
  const tries = [path.resolve(file)];
  if (!path.isAbsolute(file) && !/^\.\.?\//.test(file)) {
    for (const dir of (process.env[INCLUDE_ENV] || '').split(path.delimiter).filter(Boolean)) {
      tries.push(path.resolve(dir, file));
    }
  }
  for (const candidate of tries) {
    try {
      return { contents: fs.readFileSync(candidate, 'utf8') };
    } catch (e) {
      // next folder
    }
  }
  return { error: `File not found: ${file}` };
}

function standardJson(raw) {
  let input;
  try {
    input = JSON.parse(raw);
  } catch (e) {
    fail(`stdin is not standard JSON: ${e.message}`, 2);
  }
  const sources = input.sources || {};
  for (const [name, src] of Object.entries(sources)) {
    if (typeof src.content !== 'string' && Array.isArray(src.urls)) {
      for (const url of src.urls) {
        const read = readFile(url);
        if (read.contents !== undefined) {
          src.content = read.contents;
          delete src.urls;
          break;
        }
      }
      if (typeof src.content !== 'string') fail(`cannot read source ${name} (${src.urls.join(', ')})`);
    }
  }
  const pkg = envPackage();
  const version = pkg ? pkg.version : envVersion() || pickVersion(Object.values(sources).map((s) => s.content || ''));
  const solc = require(pkg ? pkg.dir : path.join(__dirname, 'node_modules', ALIASES[version]));
  const text = JSON.stringify(input);
  // 0.4.x: compileStandardWrapper(input, cb); 0.5.x: compile(input, cb); 0.6+: compile(input, {import: cb}).
  if (cmp(version, '0.5.0') < 0) return solc.compileStandardWrapper(text, readFile);
  if (cmp(version, '0.6.0') < 0) return solc.compile(text, readFile);
  return solc.compile(text, { import: readFile });
}

function main(args) {
  if (args.includes('--version')) {
    const v = envVersion() || DEFAULT_VERSION;
    writeOut(`solc, the solidity compiler commandline interface (solc-js bridge)\nVersion: ${v}\n`);
    return;
  }
  if (!args.includes('--standard-json')) fail('usage: solc_bridge.js --version | --standard-json < input.json', 2);
  const chunks = [];
  process.stdin.on('data', (c) => chunks.push(c));
  process.stdin.on('end', () => {
    const out = standardJson(Buffer.concat(chunks).toString('utf8'));
    writeOut(out + '\n', () => process.exit(0));
  });
}

main(process.argv.slice(2));
