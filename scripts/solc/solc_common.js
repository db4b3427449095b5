// What the compile worker and Slither's solc bridge share: stdout kept for answers, the bundled releases.
'use strict';

const path = require('path');

// Keep real stdout for the caller's answers; anything the compilers print goes to stderr instead.
function claimStdout() {
  const writeOut = process.stdout.write.bind(process.stdout);
  console.log = console.info = console.debug = console.error;
  process.stdout.write = process.stderr.write.bind(process.stderr);
  return writeOut;
}

// "0.8.26" -> "solc-0826": the npm aliases of package.json ("solc-0826": "npm:solc@0.8.26").
function bundledAliases() {
  const aliases = {};
  for (const [alias, spec] of Object.entries(require(path.join(__dirname, 'package.json')).dependencies || {})) {
    const m = /^npm:solc@(\d+\.\d+\.\d+)$/.exec(spec);
    if (m) aliases[m[1]] = alias;
  }
  return aliases;
}

module.exports = { claimStdout, bundledAliases };
