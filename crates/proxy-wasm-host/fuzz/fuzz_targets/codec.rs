//! The header-map codec and the name/value/path checks, on arbitrary bytes: never panic,
//! and whatever parses serializes back to bytes that parse to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_wasm_host::hostcalls::headers_valid;
use proxy_wasm_host::maps::{deserialize, serialize, MapBuilder};

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = deserialize(data) {
        let again = serialize(pairs.iter().copied());
        let reparsed = deserialize(&again).expect("a serialized map parses");
        assert_eq!(pairs, reparsed);
        let mut b = MapBuilder::new();
        for (k, v) in &pairs {
            b.push_lowercase_key(k, v);
            let _ = headers_valid(k, v);
        }
        assert_eq!(b.serialized_size(), b.finish().len());
    }
    let _ = proxy_wasm_host::hostcalls::split_property_path(data);
});
