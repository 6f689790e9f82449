//! A body chunk on its way through the chain of filters. It starts as nginx's buffers and
//! stays them, untouched, unless a filter changes the bytes: a filter that only reads the
//! chunk gets it straight from those buffers, one that does not even look costs nothing,
//! and either way the buffers go on as they came (a static file keeps sendfile).

use ngx::ffi::*;
use proxy_wasm_host::abi::BufferType;
use proxy_wasm_host::Status;

use crate::util::buf;

#[derive(Default)]
pub(crate) struct Chunk {
    /// nginx's buffers holding the chunk, not consumed; null once a filter changed the bytes,
    /// or when the chunk never was in nginx's buffers (a request body, held bytes).
    chain: *mut ngx_chain_t,
    /// The chunk's bytes once `chain` is null.
    bytes: Vec<u8>,
    /// The size of `chain`.
    len: usize,
}

impl Chunk {
    pub fn from_bytes(bytes: Vec<u8>) -> Chunk {
        Chunk { chain: std::ptr::null_mut(), len: bytes.len(), bytes }
    }

    /// # Safety
    /// `cl` is a live chain of `len` bytes that stays unconsumed while the chunk is used,
    /// within the body filter call that got it.
    pub unsafe fn from_chain(cl: *mut ngx_chain_t, len: usize) -> Chunk {
        Chunk { chain: cl, bytes: Vec::new(), len }
    }

    pub fn len(&self) -> usize {
        if self.chain.is_null() {
            self.bytes.len()
        } else {
            self.len
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands bytes `start..end` (inside the chunk) to `put`, in order: straight from nginx's
    /// memory buffers while they are the chunk, so a plugin that only reads
    /// costs no copy besides its own; a file buffer's part is read into a scratch buffer of
    /// at most its size (a piece: 256 KiB). Err(()): a file could not be read; the inner
    /// result is `put`'s.
    pub fn read_range<E>(
        &mut self,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, ()> {
        if self.chain.is_null() {
            return match self.bytes.get(start..end) {
                Some(b) => Ok(put(b)),
                None => Err(()),
            };
        }
        let (mut at, mut reached, mut put_err, mut scratch) = (0usize, false, None, Vec::new());
        // SAFETY: the chain is live and unconsumed (from_chain's contract); a file range is
        // read into `scratch`, sized for it first.
        let walked = unsafe {
            buf::walk(self.chain, false, &mut |d| {
                let len = match &d {
                    buf::Data::Memory(m) => m.len(),
                    buf::Data::File { len, .. } => *len,
                };
                let (base, from, to) = (at, start.max(at), end.min(at + len));
                at += len;
                if from < to {
                    let part = match d {
                        buf::Data::Memory(m) => &m[from - base..to - base],
                        buf::Data::File { file, pos, .. } => {
                            scratch.clear();
                            scratch.resize(to - from, 0);
                            let off = pos + (from - base) as off_t;
                            if ngx_read_file(file, scratch.as_mut_ptr(), scratch.len(), off) != scratch.len() as isize {
                                return Err(());
                            }
                            &scratch[..]
                        }
                    };
                    put(part).map_err(|e| put_err = Some(e))?;
                }
                // Stops the walk once the range is out; not a failure.
                reached = at >= end;
                if reached { Err(()) } else { Ok(()) }
            })
        };
        match put_err {
            Some(e) => Ok(Err(e)),
            None if reached || (walked.is_ok() && end <= at) => Ok(Ok(())),
            None => Err(()),
        }
    }

    /// The bytes for changing, copied out of nginx's buffers the first time (Err: a file
    /// buffer could not be read): from then on they, not nginx's buffers, are the chunk.
    pub fn bytes_mut(&mut self) -> Result<&mut Vec<u8>, ()> {
        if !self.chain.is_null() {
            self.bytes.reserve_exact(self.len);
            // SAFETY: the chain is live and unconsumed (from_chain's contract).
            if unsafe { buf::copy_out(self.chain, &mut self.bytes) }.is_err() {
                self.bytes.clear();
                return Err(());
            }
            self.chain = std::ptr::null_mut();
        }
        Ok(&mut self.bytes)
    }

    /// The bytes, owned.
    pub fn into_bytes(mut self) -> Result<Vec<u8>, ()> {
        self.bytes_mut()?;
        Ok(self.bytes)
    }

    /// nginx's buffers, while they still are the chunk.
    pub fn untouched(&self) -> Option<*mut ngx_chain_t> {
        (!self.chain.is_null()).then_some(self.chain)
    }
}

/// The body (or L4 data) the running callback may read and change, as the host core's
/// stream hands it out for one buffer type: bytes a filter holds (it paused before), or a
/// chunk still in nginx's buffers, copied out only if changed.
pub(crate) enum Body<'a> {
    Held(&'a mut Vec<u8>),
    Chunk(&'a mut Chunk),
}

/// A `Body` for buffer type `which` (None outside the body callbacks), serving the host
/// core's `body`, `body_size` and `body_read` for it. `Err(())`: a file buffer could not be
/// read (the caller logs it).
pub(crate) struct BodySlot<'a>(pub Option<(BufferType, Body<'a>)>);

impl<'a> BodySlot<'a> {
    /// Bytes a filter holds, as buffer `which`.
    pub fn held(which: BufferType, b: &'a mut Vec<u8>) -> BodySlot<'a> {
        BodySlot(Some((which, Body::Held(b))))
    }

    /// A chunk (still nginx's buffers until changed), as buffer `which`.
    pub fn chunk(which: BufferType, c: &'a mut Chunk) -> BodySlot<'a> {
        BodySlot(Some((which, Body::Chunk(c))))
    }

    pub fn bytes_mut(&mut self, which: BufferType) -> Option<Result<&mut Vec<u8>, ()>> {
        match &mut self.0 {
            Some((t, Body::Held(b))) if *t == which => Some(Ok(&mut **b)),
            Some((t, Body::Chunk(c))) if *t == which => Some(c.bytes_mut()),
            _ => None,
        }
    }

    pub fn size(&self, which: BufferType) -> Option<usize> {
        match &self.0 {
            Some((t, Body::Held(b))) if *t == which => Some(b.len()),
            Some((t, Body::Chunk(c))) if *t == which => Some(c.len()),
            _ => None,
        }
    }

    pub fn read(
        &mut self,
        which: BufferType,
        start: usize,
        end: usize,
        put: &mut dyn FnMut(&[u8]) -> Result<(), Status>,
    ) -> Option<Result<Result<(), Status>, ()>> {
        match &mut self.0 {
            Some((t, Body::Held(b))) if *t == which => Some(Ok(b.get(start..end).map_or(Err(Status::InternalFailure), put))),
            Some((t, Body::Chunk(c))) if *t == which => Some(c.read_range(start, end, put)),
            _ => None,
        }
    }
}
