//! The Proxy-Wasm header-map codec.
//!
//! Wire format (little-endian): u32 pair count N, then N × (u32 key_len, u32 value_len), then
//! each key and value followed by a NUL byte. An empty map may be sent as zero bytes or as a
//! single NUL byte (some SDKs do that).

use crate::abi::Status;

pub use crate::limits::{MAX_PAIRS, MAX_SERIALIZED_SIZE};

/// Builds a serialized map without an allocation per pair: sizes and bytes are kept in two
/// growing buffers and joined at the end.
#[derive(Default)]
pub struct MapBuilder {
    sizes: Vec<u32>,
    data: Vec<u8>,
}

impl MapBuilder {
    pub fn new() -> MapBuilder {
        MapBuilder::default()
    }

    pub fn clear(&mut self) {
        self.sizes.clear();
        self.data.clear();
    }

    pub fn len(&self) -> usize {
        self.sizes.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        self.sizes.push(key.len() as u32);
        self.sizes.push(value.len() as u32);
        self.data.extend_from_slice(key);
        self.data.push(0);
        self.data.extend_from_slice(value);
        self.data.push(0);
    }

    /// Pushes a header whose name is lower-cased on the way, as Envoy presents HTTP/1 names.
    pub fn push_lowercase_key(&mut self, key: &[u8], value: &[u8]) {
        self.sizes.push(key.len() as u32);
        self.sizes.push(value.len() as u32);
        self.data.extend(key.iter().map(|b| b.to_ascii_lowercase()));
        self.data.push(0);
        self.data.extend_from_slice(value);
        self.data.push(0);
    }

    /// The size `finish` will produce.
    pub fn serialized_size(&self) -> usize {
        4 + self.sizes.len() * 4 + self.data.len()
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_size());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        for s in &self.sizes {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// Serializes pairs in one call (tests, local responses).
pub fn serialize<'a, I>(pairs: I) -> Vec<u8>
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut b = MapBuilder::new();
    for (k, v) in pairs {
        b.push(k, v);
    }
    b.finish()
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let s = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parses a serialized map into borrowed slices, rejecting anything malformed: a count or
/// sizes that point past the end, missing NUL terminators, too many pairs or bytes.
pub fn deserialize(bytes: &[u8]) -> Result<Vec<(&[u8], &[u8])>, Status> {
    if bytes.is_empty() || bytes == [0] {
        return Ok(Vec::new());
    }
    if bytes.len() > MAX_SERIALIZED_SIZE {
        return Err(Status::BadArgument);
    }
    let n = read_u32(bytes, 0).ok_or(Status::BadArgument)? as usize;
    if n > MAX_PAIRS {
        return Err(Status::BadArgument);
    }
    let mut pos = 4usize.checked_add(n * 8).ok_or(Status::BadArgument)?;
    if pos > bytes.len() {
        return Err(Status::BadArgument);
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let klen = read_u32(bytes, 4 + i * 8).ok_or(Status::BadArgument)? as usize;
        let vlen = read_u32(bytes, 8 + i * 8).ok_or(Status::BadArgument)? as usize;
        let key = take(bytes, &mut pos, klen)?;
        let value = take(bytes, &mut pos, vlen)?;
        out.push((key, value));
    }
    Ok(out)
}

/// Takes `len` bytes and the NUL that must follow them.
fn take<'a>(bytes: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], Status> {
    let end = pos.checked_add(len).ok_or(Status::BadArgument)?;
    if end >= bytes.len() || bytes[end] != 0 {
        return Err(Status::BadArgument);
    }
    let s = &bytes[*pos..end];
    *pos = end + 1;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_round_trips() {
        let bytes = serialize([(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
        let expected: Vec<u8> = [
            &2u32.to_le_bytes()[..],
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &1u32.to_le_bytes(),
            &2u32.to_le_bytes(),
            b"a\x001\x00b\x0022\x00",
        ]
        .concat();
        assert_eq!(bytes, expected);
        let pairs = deserialize(&bytes).unwrap();
        assert_eq!(pairs, vec![(&b"a"[..], &b"1"[..]), (&b"b"[..], &b"22"[..])]);
    }

    #[test]
    fn empty_forms() {
        assert!(deserialize(b"").unwrap().is_empty());
        assert!(deserialize(b"\0").unwrap().is_empty());
        assert!(deserialize(&serialize(std::iter::empty())).unwrap().is_empty());
        assert_eq!(MapBuilder::new().finish(), vec![0, 0, 0, 0]);
    }

    #[test]
    fn lowercases_keys_only() {
        let mut b = MapBuilder::new();
        b.push_lowercase_key(b"X-Foo", b"Bar");
        assert_eq!(b.serialized_size(), b.finish().len());
        assert_eq!(deserialize(&b.finish()).unwrap(), vec![(&b"x-foo"[..], &b"Bar"[..])]);
    }

    #[test]
    fn rejects_malformed() {
        // count larger than the data
        assert_eq!(deserialize(&5u32.to_le_bytes()), Err(Status::BadArgument));
        // size pointing past the end
        let mut bad = serialize([(&b"k"[..], &b"v"[..])]);
        bad[4] = 200;
        assert_eq!(deserialize(&bad), Err(Status::BadArgument));
        // missing NUL terminator
        let mut bad = serialize([(&b"k"[..], &b"v"[..])]);
        let l = bad.len();
        bad[l - 1] = b'x';
        assert_eq!(deserialize(&bad), Err(Status::BadArgument));
        // huge count does not allocate or overflow
        assert_eq!(deserialize(&u32::MAX.to_le_bytes()), Err(Status::BadArgument));
        // truncated header
        assert_eq!(deserialize(&[1, 0]), Err(Status::BadArgument));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // a cheap deterministic fuzz: every prefix and single-byte mutation of a valid map
        let good = serialize([(&b"alpha"[..], &b"1"[..]), (&b""[..], &b"two"[..])]);
        for i in 0..good.len() {
            let _ = deserialize(&good[..i]);
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                let _ = deserialize(&m);
            }
        }
    }
}
