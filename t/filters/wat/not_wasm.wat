this is not a wasm module
