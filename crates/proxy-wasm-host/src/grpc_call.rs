//! gRPC calls a plugin makes (`proxy_grpc_call`, `proxy_grpc_stream`): the protocol side,
//! independent of how the embedder carries them. A call leaves the host as an
//! `HttpCallRequest` (`grpc` set): a POST to `/service/method` with `content-type:
//! application/grpc`, `te: trailers`, `grpc-timeout` and the metadata as headers, and the
//! messages framed (5-byte prefix) as its body. What comes back reaches the host as
//! `GrpcEvent`s, in order; the host turns them into the Proxy-Wasm callbacks as Envoy does.

/// gRPC status codes the host produces itself.
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
}

/// Which kind of call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// proxy_grpc_call: one message each way; answered by on_grpc_receive (OK) or
    /// on_grpc_close (anything else), nothing more.
    Unary,
    /// proxy_grpc_stream: initial metadata, each message, trailing metadata and the close,
    /// each delivered as it arrives.
    Stream,
}

/// What the embedder hands back for a gRPC call, in the order it happened. `Close` ends the
/// call; nothing may follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcEvent {
    /// The response headers (`-bin` values decoded).
    InitialMetadata(Vec<(Vec<u8>, Vec<u8>)>),
    /// One message, unframed.
    Message(Vec<u8>),
    /// The trailers (`-bin` values decoded), without grpc-status / grpc-message.
    TrailingMetadata(Vec<(Vec<u8>, Vec<u8>)>),
    /// The call's end: its status and grpc-message (percent-decoded).
    Close { status: u32, message: Vec<u8> },
}

/// Largest message (either way) one call carries: the same bound as an HTTP call's body.
pub const MAX_GRPC_MESSAGE: usize = crate::http_call::MAX_CALL_BODY;

/// Envoy's mapping of an HTTP status (a response that is not gRPC's 200) to a gRPC status
/// (Grpc::Utility::httpToGrpcStatus).
pub fn http_to_grpc_status(http: u32) -> u32 {
    match http {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// Appends `msg` framed as gRPC sends it: not compressed, 4-byte big-endian length.
pub fn frame_into(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Cuts a response body into messages as its bytes arrive, in pieces of any size.
#[derive(Default)]
pub struct Deframer {
    buf: Vec<u8>,
}

impl Deframer {
    /// Feeds bytes; returns the messages they complete. Err on a compressed message (the
    /// host asks for none: it sends no grpc-accept-encoding) or one above `max` bytes.
    pub fn push(&mut self, mut data: &[u8], max: usize) -> Result<Vec<Vec<u8>>, &'static str> {
        let mut out = Vec::new();
        loop {
            // Enough of the prefix to judge the frame before keeping any of its bytes.
            let need = 5usize.saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..need]);
            data = &data[need..];
            if self.buf.len() < 5 {
                return Ok(out);
            }
            if self.buf[0] != 0 {
                return Err("a compressed message (the host asked for none)");
            }
            let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > max {
                return Err("a message larger than the host accepts");
            }
            let take = (5 + len - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < 5 + len {
                return Ok(out);
            }
            out.push(self.buf[5..].to_vec());
            self.buf.clear();
        }
    }

    /// Bytes of an unfinished message: a body that ends here was cut short.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// The status a call ended with: grpc-status from the trailers, else from the headers (a
/// "trailers-only" response); INTERNAL when there is none, as in Envoy.
pub fn status_of(headers: &[(Vec<u8>, Vec<u8>)], trailers: &[(Vec<u8>, Vec<u8>)]) -> (u32, Vec<u8>) {
    let find = |name: &[u8]| {
        trailers.iter().chain(headers).find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    };
    let status = find(b"grpc-status").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok());
    match status {
        Some(s) => (s, find(b"grpc-message").map(percent_decode).unwrap_or_default()),
        None => (code::INTERNAL, b"gRPC status code not found".to_vec()),
    }
}

/// grpc-message is percent-encoded (the gRPC HTTP/2 spec); a bad escape stays as it is.
pub fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// Whether a metadata key carries binary values (base64 on the wire).
pub fn is_binary_key(key: &[u8]) -> bool {
    key.len() > 4 && key[key.len() - 4..].eq_ignore_ascii_case(b"-bin")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 without padding, as gRPC implementations should emit it.
pub fn base64_encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(B64[(n >> (18 - 6 * i) & 63) as usize]);
        }
    }
    out
}

/// Base64, padded or not (gRPC accepts both); None on any other byte.
pub fn base64_decode(data: &[u8]) -> Option<Vec<u8>> {
    let data = data.strip_suffix(b"==").or_else(|| data.strip_suffix(b"=")).unwrap_or(data);
    let val = |b: u8| B64.iter().position(|&c| c == b).map(|p| p as u32);
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= val(b)? << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Response metadata as the plugin sees it: `-bin` values decoded (kept as they are if they
/// are not base64), grpc-status and grpc-message left out of the trailers.
pub fn metadata_for_plugin(pairs: Vec<(Vec<u8>, Vec<u8>)>, trailers: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .into_iter()
        .filter(|(k, _)| {
            !(trailers && (k.eq_ignore_ascii_case(b"grpc-status") || k.eq_ignore_ascii_case(b"grpc-message")))
        })
        .map(|(k, v)| {
            let v = if is_binary_key(&k) { base64_decode(&v).unwrap_or(v) } else { v };
            (k, v)
        })
        .collect()
}

/// A `grpc-timeout` value for `ms` milliseconds (at most 8 digits, as the spec requires).
pub fn timeout_value(ms: u32) -> Vec<u8> {
    if ms < 100_000_000 {
        format!("{ms}m").into_bytes()
    } else {
        format!("{}S", ms / 1000).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_any_pieces() {
        let mut wire = Vec::new();
        for m in [&b"hello"[..], b"", &vec![7u8; 70_000]] {
            frame_into(&mut wire, m);
        }
        for step in [1, 3, 5, 6, 4096, wire.len()] {
            let mut d = Deframer::default();
            let mut got = Vec::new();
            for piece in wire.chunks(step) {
                got.extend(d.push(piece, MAX_GRPC_MESSAGE).unwrap());
            }
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(got[0], b"hello");
            assert!(got[1].is_empty());
            assert_eq!(got[2].len(), 70_000);
            assert_eq!(d.pending(), 0);
        }
        let mut d = Deframer::default();
        assert!(d.push(&[1, 0, 0, 0, 1, 9], 100).is_err(), "compressed");
        let mut d = Deframer::default();
        assert!(d.push(&[0, 0, 0, 1, 0], 100).is_err(), "too large");
        let mut d = Deframer::default();
        assert!(d.push(&[0, 0, 0, 0, 3, 1], 100).unwrap().is_empty());
        assert_eq!(d.pending(), 6);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        for (raw, enc) in [(&b""[..], &b""[..]), (b"f", b"Zg"), (b"fo", b"Zm8"), (b"foo", b"Zm9v"), (b"\x00\xff\x10\x80", b"AP8QgA")] {
            assert_eq!(base64_encode(raw), enc);
            assert_eq!(base64_decode(enc).unwrap(), raw);
        }
        assert_eq!(base64_decode(b"Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode(b"Zg==").unwrap(), b"f");
        assert!(base64_decode(b"Z").is_none());
        assert!(base64_decode(b"Zm9v!").is_none());
    }

    #[test]
    fn status_from_trailers_then_headers() {
        let h = vec![(b"grpc-status".to_vec(), b"7".to_vec()), (b"grpc-message".to_vec(), b"no%20way".to_vec())];
        assert_eq!(status_of(&h, &[]), (7, b"no way".to_vec()));
        let t = vec![(b"grpc-status".to_vec(), b"0".to_vec())];
        assert_eq!(status_of(&h, &t).0, 0);
        assert_eq!(status_of(&[], &[]).0, code::INTERNAL);
        assert_eq!(percent_decode(b"100%"), b"100%");
        assert_eq!(percent_decode(b"%zz%41"), b"%zzA");
        assert_eq!(http_to_grpc_status(503), code::UNAVAILABLE);
        assert_eq!(http_to_grpc_status(500), code::UNKNOWN);
        assert_eq!(timeout_value(1500), b"1500m");
        let md = metadata_for_plugin(vec![(b"x-bin".to_vec(), b"AP8".to_vec()), (b"grpc-status".to_vec(), b"0".to_vec())], true);
        assert_eq!(md, vec![(b"x-bin".to_vec(), vec![0, 255])]);
    }
}
