#!/usr/bin/env node
// Multi-file compiles for training_pipeline.corpus.imports.compile_source_sets (npm packages with imports).
// One JSON job per stdin line, {sources: {unit name: text}, entry, solc_path, optimize, runs};
// one JSON answer per stdout line, {contracts: {name: runtime hex}} or {error}. Any solc-js release folder.
'use strict';
const readline = require('readline');
const { claimStdout } = require('./solc_common');

const writeOut = claimStdout();
const loaded = new Map();
function compiler(dir) {
  if (!loaded.has(dir)) {
    for (const old of [...loaded.keys()].slice(0, Math.max(0, loaded.size - 1))) forget(old);
    const solc = require(dir);
    loaded.set(dir, typeof solc.compileStandardWrapper === 'function'
      ? (input) => solc.compileStandardWrapper(input) : (input) => solc.compile(input));
  }
  return loaded.get(dir);
}
function forget(dir) {
  loaded.delete(dir);
  for (const key of Object.keys(require.cache)) if (key.startsWith(dir)) delete require.cache[key];
}
function run(job) {
  const sources = {};
  for (const [name, content] of Object.entries(job.sources)) sources[name] = { content };
  const settings = { optimizer: { enabled: !!job.optimize, runs: job.runs || 200 },
    outputSelection: { [job.entry]: { '*': ['evm.deployedBytecode.object'] } } };
  let out;
  try {
    out = JSON.parse(compiler(job.solc_path)(JSON.stringify({ language: 'Solidity', sources, settings })));
  } catch (e) {
    forget(job.solc_path);
    return { error: `solc crashed: ${String((e && e.message) || e).split('\n')[0].slice(0, 300)}` };
  }
  const err = (out.errors || []).find((e) => e.severity === 'error');
  if (err) {
    const text = String(err.formattedMessage || err.message).split('\n').map((s) => s.trim()).filter(Boolean);
    return { error: text.slice(0, 2).join(' ').slice(0, 500) };
  }
  const contracts = {};
  for (const [name, c] of Object.entries((out.contracts || {})[job.entry] || {})) {
    contracts[name] = (((c.evm || {}).deployedBytecode || {}).object) || '';
  }
  return { contracts };
}
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  let answer;
  try { answer = run(JSON.parse(line)); } catch (e) { answer = { error: `runner error: ${e.message}` }; }
  writeOut(JSON.stringify(answer) + '\n');
});
