//! The header-map codec and the name/value/path checks, on arbitrary bytes: never panic,
//! and whatever parses serializes back to bytes that parse to the same pairs. Also gRPC's
//! message framing and metadata codecs.
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
    grpc(data);
});

/// gRPC framing and metadata codecs: the messages cut out of a body do not depend on how it
/// is split; base64 round-trips; status and percent-decoding never panic.
fn grpc(data: &[u8]) {
    use proxy_wasm_host::grpc_call::*;
    let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let (mut whole, mut pieces) = (Deframer::default(), Deframer::default());
    let a = whole.push(data, 1 << 16);
    let b1 = pieces.push(&data[..split], 1 << 16);
    let b = b1.and_then(|mut m| {
        m.extend(pieces.push(&data[split..], 1 << 16)?);
        Ok(m)
    });
    if let (Ok(a), Ok(b)) = (&a, &b) {
        assert_eq!(a, b);
        assert_eq!(whole.pending(), pieces.pending());
        let mut again = Vec::new();
        for m in a {
            frame_into(&mut again, m);
        }
        assert_eq!(&again[..], &data[..data.len() - whole.pending()]);
    }
    assert_eq!(base64_decode(&base64_encode(data)).as_deref(), Some(data));
    let pairs = vec![(b"grpc-status".to_vec(), data.to_vec()), (b"grpc-message".to_vec(), data.to_vec())];
    let _ = status_of(&pairs, &[]);
    let _ = percent_decode(data);
    let _ = metadata_for_plugin(pairs, true);
}
