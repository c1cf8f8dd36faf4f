// Compiles Settlement.sol with the pinned solc-js (package.json) and prints the artifact canon
// embeds (ABI + creation bytecode). `node compile.js > Settlement.json` rebuilds it;
// node/tests/l1_contract.rs recompiles and compares whenever solc is installed here.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = fs.readFileSync(path.join(__dirname, "Settlement.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "Settlement.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    // No metadata hash: the bytecode depends on the source and these settings only.
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length > 0) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const c = out.contracts["Settlement.sol"].Settlement;
const artifact = {
  contractName: "Settlement",
  compiler: "solc-js " + solc.version(),
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + "\n");
