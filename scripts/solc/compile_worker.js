#!/usr/bin/env node
// Long-lived solc-js compile worker, driven by training_pipeline.corpus.solc.SolcPool.
// Protocol: one JSON request per stdin line, {"id": n, "jobs": [{source, version, contract, evm_version}]};
// one JSON response per stdout line, {"id": n, "results": [{bytecode, contract, error}]}.
// Nothing else may reach stdout: console.log / process.stdout.write are rerouted to stderr.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const writeOut = process.stdout.write.bind(process.stdout);
console.log = console.info = console.debug = console.error;
process.stdout.write = process.stderr.write.bind(process.stderr);

const FILE = 'Contract.sol';
const ALIASES = {}; // "0.8.26" -> "solc-0826", from package.json ("solc-0826": "npm:solc@0.8.26")
for (const [alias, spec] of Object.entries(require(path.join(__dirname, 'package.json')).dependencies || {})) {
  const m = /^npm:solc@(\d+\.\d+\.\d+)$/.exec(spec);
  if (m) ALIASES[m[1]] = alias;
}
const compilers = {};

function load(version) {
  if (!compilers[version]) {
    const solc = require(path.join(__dirname, 'node_modules', ALIASES[version]));
    // 0.4.x: compile() is the legacy API; compileStandardWrapper takes standard JSON there and in 0.5.x.
    compilers[version] = typeof solc.compileStandardWrapper === 'function'
      ? (input) => solc.compileStandardWrapper(input)
      : (input) => solc.compile(input);
  }
  return compilers[version];
}

function unload(version) {
  // After an internal abort the emscripten module may be unusable: drop it so the next job reloads it.
  delete compilers[version];
  const dir = path.join(__dirname, 'node_modules', ALIASES[version] || '?') + path.sep;
  for (const key of Object.keys(require.cache)) if (key.startsWith(dir)) delete require.cache[key];
}

// Declaration order and kind of each contract (solc sorts output names): comments and strings blanked out.
function declarations(source) {
  const code = source.replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g, ' ');
  const decls = {};
  const re = /\b(contract|library|interface)\s+([A-Za-z_$][\w$]*)/g;
  let m, i = 0;
  while ((m = re.exec(code)) !== null) if (!(m[2] in decls)) decls[m[2]] = { order: i++, library: m[1] === 'library' };
  return decls;
}

function lineOf(source, offset) {
  return Buffer.from(source, 'utf8').subarray(0, offset).toString('utf8').split('\n').length;
}

function formatError(err, source) {
  const msg = String(err.message || err.formattedMessage || 'unknown error').split('\n').map((s) => s.trim())
    .filter(Boolean).join(' ');
  let where = '';
  const m = /:(\d+):(\d+):/.exec(err.formattedMessage || '');
  if (m) where = ` (line ${m[1]}, col ${m[2]})`;
  else if (err.sourceLocation && err.sourceLocation.start >= 0) where = ` (line ${lineOf(source, err.sourceLocation.start)})`;
  return `${err.type || 'Error'}${where}: ${msg}`;
}

function compileJob(job) {
  const wanted = job.contract == null ? null : String(job.contract);
  const fail = (error) => ({ bytecode: null, contract: wanted, error });
  if (typeof job.source !== 'string') return fail('job has no "source" string');
  if (!ALIASES[job.version]) return fail(`unsupported solc version ${job.version}; supported: ${Object.keys(ALIASES).join(', ')}`);
  const settings = { optimizer: { enabled: false, runs: 200 }, outputSelection: { '*': { '*': ['evm.deployedBytecode.object'] } } };
  if (job.evm_version) settings.evmVersion = String(job.evm_version);
  const input = JSON.stringify({ language: 'Solidity', sources: { [FILE]: { content: job.source } }, settings });
  let out;
  try {
    out = JSON.parse(load(job.version)(input));
  } catch (e) {
    unload(job.version);
    return fail(`solc ${job.version} crashed: ${String((e && e.message) || e).split('\n')[0].slice(0, 300)}`);
  }
  const firstError = (out.errors || []).find((e) => e.severity === 'error');
  if (firstError) return fail(formatError(firstError, job.source));
  const contracts = (out.contracts || {})[FILE] || {};
  const code = (name) => (((contracts[name] || {}).evm || {}).deployedBytecode || {}).object || '';
  let name = wanted;
  if (name !== null) {
    if (!(name in contracts)) return fail(`contract ${name} not found; available: ${Object.keys(contracts).join(', ') || 'none'}`);
    if (!code(name)) return fail(`contract ${name} has no deployed bytecode (interface, library or abstract?)`);
  } else {
    // Default: the last deployable contract, preferring contracts over libraries (their helpers).
    const decls = declarations(job.source);
    const rank = (n) => (decls[n] ? decls[n].order - (decls[n].library ? 1e6 : 0) : -1);
    const deployable = Object.keys(contracts).filter((n) => code(n)).sort((a, b) => rank(a) - rank(b));
    if (!deployable.length) return fail('no contract with deployed bytecode in source');
    name = deployable[deployable.length - 1];
  }
  return { bytecode: '0x' + code(name), contract: name, error: null };
}

function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return { id: null, error: `bad request line: ${e.message}`, results: [] };
  }
  const jobs = Array.isArray(req.jobs) ? req.jobs : [];
  return {
    id: req.id ?? null,
    results: jobs.map((job) => {
      try {
        return compileJob(job || {});
      } catch (e) {
        return { bytecode: null, contract: null, error: `worker error: ${String((e && e.message) || e).split('\n')[0]}` };
      }
    }),
  };
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (line.trim()) writeOut(JSON.stringify(handle(line)) + '\n');
});
rl.on('close', () => writeOut('', () => process.exit(0)));
