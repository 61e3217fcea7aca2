"""The Wasm host of an edge: ABI, sandbox, module cache, host imports, policy set."""
