#!/usr/bin/env node
// Long-lived solc-js compile worker, driven by training_pipeline.corpus.solc.SolcPool.
// Protocol: one JSON request per stdin line,
//   {"id": n, "jobs": [{source, version, contract, evm_version, optimize, runs, solc_path}]};
// one JSON response per stdout line, {"id": n, "results": [{bytecode, contract, error}]}.
// solc_path is the folder of any solc-js package (a cached release, e.g. <cache>/0.4.24/node_modules/solc);
// without it the version must be one of the npm aliases bundled in package.json here.
// Nothing else may reach stdout: console.log / process.stdout.write are rerouted to stderr.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');

const { bundledAliases, claimStdout } = require('./solc_common');

const writeOut = claimStdout();

const FILE = 'Contract.sol';
const ALIASES = bundledAliases(); // "0.8.26" -> "solc-0826"
const MAX_LOADED = 6; // compilers kept in memory (each is a large emscripten module); least recent goes
const compilers = new Map(); // package folder -> compile function, in order of last use

function packageDir(job) {
  if (job.solc_path) return path.resolve(String(job.solc_path));
  return ALIASES[job.version] ? path.join(__dirname, 'node_modules', ALIASES[job.version]) : null;
}

function load(dir) {
  let compile = compilers.get(dir);
  if (!compile) {
    const solc = require(dir);
    // 0.4.x: compile() is the legacy API; compileStandardWrapper takes standard JSON there and in 0.5.x.
    compile = typeof solc.compileStandardWrapper === 'function'
      ? (input) => solc.compileStandardWrapper(input)
      : (input) => solc.compile(input);
    while (compilers.size >= MAX_LOADED) unload(compilers.keys().next().value);
  }
  compilers.delete(dir);
  compilers.set(dir, compile);
  return compile;
}

function unload(dir) {
  // After an internal abort the emscripten module may be unusable: drop it so the next job reloads it.
  compilers.delete(dir);
  let real = dir;
  try {
    real = fs.realpathSync(dir);
  } catch (e) { /* keep dir */ }
  for (const prefix of new Set([dir + path.sep, real + path.sep])) {
    for (const key of Object.keys(require.cache)) if (key.startsWith(prefix)) delete require.cache[key];
  }
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
  const dir = packageDir(job);
  if (!dir) return fail(`unsupported solc version ${job.version}; bundled: ${Object.keys(ALIASES).join(', ')}`);
  const runs = job.runs == null ? 200 : Number(job.runs);
  if (!Number.isInteger(runs) || runs < 1) return fail(`optimizer runs must be a positive integer, got ${job.runs}`);
  const settings = { optimizer: { enabled: !!job.optimize, runs }, outputSelection: { '*': { '*': ['evm.deployedBytecode.object'] } } };
  if (job.evm_version) settings.evmVersion = String(job.evm_version);
  const input = JSON.stringify({ language: 'Solidity', sources: { [FILE]: { content: job.source } }, settings });
  let out;
  try {
    out = JSON.parse(load(dir)(input));
  } catch (e) {
    unload(dir);
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
