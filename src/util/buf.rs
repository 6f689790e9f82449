//! Buffer chains: one walk over an input chain (for reading, consuming or sizing it) and a
//! one-buffer chain built from bytes.

use ngx::ffi::*;

/// One buffer's data: in memory, or in a file (a static file, a body in a temporary file).
pub(crate) enum Data<'a> {
    Memory(&'a [u8]),
    File { file: *mut ngx_file_t, pos: off_t, len: usize },
}

/// The flags of the buffers walked.
#[derive(Default, Clone, Copy)]
pub(crate) struct Flags {
    pub last_buf: bool,
    pub last_in_chain: bool,
    pub flush: bool,
}

/// Walks `cl`, handing each buffer's data to `f`; with `consume`, marks every buffer read
/// (memory and file positions at their end). Stops at the first error of `f`.
///
/// # Safety
/// `cl` is a live chain whose buffers point at readable memory.
pub(crate) unsafe fn walk(
    mut cl: *mut ngx_chain_t,
    consume: bool,
    f: &mut dyn FnMut(Data<'_>) -> Result<(), ()>,
) -> Result<Flags, ()> {
    let mut flags = Flags::default();
    while !cl.is_null() {
        let b = (*cl).buf;
        if !b.is_null() {
            // A buffer in memory is read from memory even when it also has a file copy.
            let len = buf_len(b);
            if len > 0 && file_only(b) {
                f(Data::File { file: (*b).file, pos: (*b).file_pos, len })?;
            } else if len > 0 {
                f(Data::Memory(std::slice::from_raw_parts((*b).pos, len)))?;
            }
            if consume {
                (*b).pos = (*b).last;
                (*b).file_pos = (*b).file_last;
            }
            flags.last_buf |= (*b).last_buf() != 0;
            flags.last_in_chain |= (*b).last_in_chain() != 0;
            flags.flush |= (*b).flush() != 0;
        }
        cl = (*cl).next;
    }
    Ok(flags)
}

/// Appends the bytes of `cl` (memory and file buffers) to `out` and consumes it.
///
/// # Safety
/// As `walk`.
pub(crate) unsafe fn drain(cl: *mut ngx_chain_t, out: &mut Vec<u8>) -> Result<Flags, ()> {
    copy(cl, true, out)
}

/// Appends the bytes of `cl` to `out`, leaving it unconsumed (to be passed on as it is).
///
/// # Safety
/// As `walk`.
pub(crate) unsafe fn copy_out(cl: *mut ngx_chain_t, out: &mut Vec<u8>) -> Result<Flags, ()> {
    copy(cl, false, out)
}

unsafe fn copy(cl: *mut ngx_chain_t, consume: bool, out: &mut Vec<u8>) -> Result<Flags, ()> {
    walk(cl, consume, &mut |d| match d {
        Data::Memory(m) => {
            out.extend_from_slice(m);
            Ok(())
        }
        Data::File { file, pos, len } => {
            let start = out.len();
            out.resize(start + len, 0);
            let n = ngx_read_file(file, out.as_mut_ptr().add(start), len, pos);
            if n == len as isize {
                Ok(())
            } else {
                Err(())
            }
        }
    })
}

/// The bytes in `cl` (memory and file), without consuming it.
///
/// # Safety
/// As `walk`.
pub(crate) unsafe fn size(cl: *mut ngx_chain_t) -> u64 {
    measure(cl).0
}

/// The bytes in `cl` and its flags, without consuming it.
///
/// # Safety
/// As `walk`.
pub(crate) unsafe fn measure(cl: *mut ngx_chain_t) -> (u64, Flags) {
    let mut n = 0u64;
    let flags = walk(cl, false, &mut |d| {
        n += match d {
            Data::Memory(m) => m.len(),
            Data::File { len, .. } => len,
        } as u64;
        Ok(())
    });
    (n, flags.unwrap_or_default())
}

/// Marks `cl` consumed without reading it: a file buffer is skipped, never loaded.
///
/// # Safety
/// As `walk`.
pub(crate) unsafe fn discard(cl: *mut ngx_chain_t) {
    let _ = walk(cl, true, &mut |_| Ok(()));
}

/// A one-buffer chain holding a copy of `data` in `pool`, marked last in its chain and (for
/// a main request's response) the last buffer.
///
/// # Safety
/// `pool` is a live pool.
pub(crate) unsafe fn chain_of(pool: *mut ngx_pool_t, data: &[u8], last_buf: bool) -> Option<ngx_chain_t> {
    let b = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
    if b.is_null() {
        return None;
    }
    if !data.is_empty() {
        let p = ngx_pnalloc(pool, data.len()) as *mut u8;
        if p.is_null() {
            return None;
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
        (*b).start = p;
        (*b).pos = p;
        (*b).last = p.add(data.len());
        (*b).end = (*b).last;
        (*b).set_memory(1);
    }
    (*b).set_last_buf(u32::from(last_buf));
    (*b).set_last_in_chain(1);
    Some(ngx_chain_t { buf: b, next: std::ptr::null_mut() })
}

/// Whether `b` has its bytes in a file only (a static file, a body in a temporary file).
unsafe fn file_only(b: *mut ngx_buf_t) -> bool {
    (*b).in_file() != 0 && (*b).temporary() == 0 && (*b).memory() == 0 && (*b).mmap() == 0
}

/// `cl` (more than `max` bytes) cut into pieces of at most `max` bytes, each a chain of new links:
/// a static file is one buffer however big, and a filter reading or holding a piece must not
/// need the whole file in memory. A file buffer larger than `max` is cut into shadow buffers
/// over its byte ranges (the original is consumed: its bytes are the shadows' now); a memory
/// buffer is never cut.
///
/// # Safety
/// As `walk`; `pool` is the live pool of the request `cl` belongs to.
pub(crate) unsafe fn pieces(pool: *mut ngx_pool_t, cl: *mut ngx_chain_t, max: usize) -> Result<Vec<*mut ngx_chain_t>, ()> {
    let mut out = Pieces { pool, max, pieces: Vec::new(), head: std::ptr::null_mut(), tail: std::ptr::null_mut(), size: 0 };
    let mut cl = cl;
    while !cl.is_null() {
        let b = (*cl).buf;
        cl = (*cl).next;
        if b.is_null() {
            continue;
        }
        let len = buf_len(b);
        if !file_only(b) || len <= max {
            out.push(b, len)?;
            continue;
        }
        let mut pos = (*b).file_pos;
        while pos < (*b).file_last {
            let n = ((*b).file_last - pos).min(max as off_t);
            let s = ngx_pcalloc(pool, std::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
            if s.is_null() {
                return Err(());
            }
            *s = *b;
            (*s).file_pos = pos;
            (*s).file_last = pos + n;
            pos += n;
            // The flags that end a body or a flush belong to the last piece only.
            let last = pos == (*b).file_last;
            (*s).set_last_buf(u32::from(last && (*b).last_buf() != 0));
            (*s).set_last_in_chain(u32::from(last && (*b).last_in_chain() != 0));
            (*s).set_flush(u32::from(last && (*b).flush() != 0));
            (*s).set_recycled(0);
            out.push(s, n as usize)?;
        }
        (*b).file_pos = (*b).file_last;
    }
    if !out.head.is_null() {
        out.pieces.push(out.head);
    }
    Ok(out.pieces)
}

/// The bytes of `b`, where `walk` reads them: its memory, or its file range when it has
/// no memory copy.
unsafe fn buf_len(b: *mut ngx_buf_t) -> usize {
    if file_only(b) {
        ((*b).file_last - (*b).file_pos) as usize
    } else if (*b).pos.is_null() || (*b).last <= (*b).pos {
        0
    } else {
        (*b).last.offset_from((*b).pos) as usize
    }
}

struct Pieces {
    pool: *mut ngx_pool_t,
    max: usize,
    pieces: Vec<*mut ngx_chain_t>,
    head: *mut ngx_chain_t,
    tail: *mut ngx_chain_t,
    size: usize,
}

impl Pieces {
    /// Adds `b` (`len` bytes) to the current piece, or starts the next piece with it.
    unsafe fn push(&mut self, b: *mut ngx_buf_t, len: usize) -> Result<(), ()> {
        let l = ngx_alloc_chain_link(self.pool);
        if l.is_null() {
            return Err(());
        }
        (*l).buf = b;
        (*l).next = std::ptr::null_mut();
        if !self.head.is_null() && self.size + len > self.max {
            self.pieces.push(self.head);
            self.head = std::ptr::null_mut();
            self.size = 0;
        }
        if self.head.is_null() {
            self.head = l;
        } else {
            (*self.tail).next = l;
        }
        self.tail = l;
        self.size += len;
        Ok(())
    }
}

/// The last link of `cl` (not null).
///
/// # Safety
/// `cl` is a live, non-empty chain.
pub(crate) unsafe fn last_link(mut cl: *mut ngx_chain_t) -> *mut ngx_chain_t {
    while !(*cl).next.is_null() {
        cl = (*cl).next;
    }
    cl
}

/// Size of one recycled output buffer (nginx's default output_buffers size).
const OUT_BUF_SIZE: usize = 32 * 1024;

/// Unwritten output past which a body filter waits for the client (see `backlogged`).
const BACKLOG: usize = 256 * 1024;

/// Buffers tagged with this address are ours (`ngx_chain_update_chains` recycles only those).
static OUT_TAG: u8 = 0;

/// The output buffers of a body filter that copies what it passes on, recycled once nginx has
/// written them (the free/busy chains nginx's own gzip and sub filters keep). Without them,
/// every chunk of a response would take new pool memory, held until the request ends: a long
/// response would hold its whole size.
pub(crate) struct Recycled {
    free: *mut ngx_chain_t,
    busy: *mut ngx_chain_t,
}

impl Default for Recycled {
    fn default() -> Recycled {
        Recycled { free: std::ptr::null_mut(), busy: std::ptr::null_mut() }
    }
}

impl Recycled {
    /// A chain holding a copy of `data` in our buffers (at least one buffer, so that the last
    /// one can carry flags; an empty one holds no memory, as nginx wants of a special buffer).
    ///
    /// # Safety
    /// `pool` is the live pool of the request these buffers are for.
    pub(crate) unsafe fn chain(&mut self, pool: *mut ngx_pool_t, data: &[u8]) -> Option<*mut ngx_chain_t> {
        let tag = std::ptr::addr_of!(OUT_TAG) as ngx_buf_tag_t;
        let mut head: *mut ngx_chain_t = std::ptr::null_mut();
        let mut tail: *mut *mut ngx_chain_t = &mut head;
        let mut rest = data;
        loop {
            let n = rest.len().min(OUT_BUF_SIZE);
            let cl = ngx_chain_get_free_buf(pool, &mut self.free);
            if cl.is_null() {
                return None;
            }
            let b = (*cl).buf;
            let (mut start, mut end) = ((*b).start, (*b).end);
            if n > 0 && (start.is_null() || (end as usize - start as usize) < n) {
                // A new buffer is as small as its first data (most responses are one small
                // chunk: a pool allocation, as nginx makes); a recycled one too small for what
                // comes is replaced once by a full-size one, so that a long stream does not
                // allocate again and again.
                let size = if start.is_null() { n } else { OUT_BUF_SIZE };
                let p = ngx_palloc(pool, size) as *mut u8;
                if p.is_null() {
                    return None;
                }
                (start, end) = (p, p.add(size));
            }
            // A recycled buffer keeps its memory and nothing else.
            let mut nb: ngx_buf_t = std::mem::zeroed();
            nb.start = start;
            nb.end = end;
            nb.pos = start;
            nb.last = start;
            nb.tag = tag;
            if n > 0 {
                std::ptr::copy_nonoverlapping(rest.as_ptr(), start, n);
                nb.last = start.add(n);
                nb.set_temporary(1);
            }
            *b = nb;
            (*cl).next = std::ptr::null_mut();
            *tail = cl;
            tail = &mut (*cl).next;
            rest = &rest[n..];
            if rest.is_empty() {
                return Some(head);
            }
        }
    }

    /// Whether the client is behind: our buffers not written yet hold at least `BACKLOG`
    /// bytes, and nginx will call the body filters again once it can write (the connection
    /// holds unsent output, or the request waits for subrequests). Then a body filter takes
    /// no more input: what feeds it (nginx's copy filter reading a file, an upstream) stops
    /// when its own buffers are not given back, as with any nginx filter.
    ///
    /// # Safety
    /// `r` is the live request these buffers are for.
    pub(crate) unsafe fn backlogged(&self, r: *mut ngx_http_request_t) -> bool {
        let mut held = 0usize;
        let mut cl = self.busy;
        while !cl.is_null() {
            let b = (*cl).buf;
            if !(*b).pos.is_null() && (*b).last > (*b).pos {
                held += (*b).last.offset_from((*b).pos) as usize;
            }
            cl = (*cl).next;
        }
        held >= BACKLOG && ((*(*r).connection).buffered() != 0 || !(*r).postponed.is_null())
    }

    /// After the next filter took `out` (or was called with nothing): the buffers it has
    /// written go back to the free list.
    ///
    /// # Safety
    /// As `chain`; `out` is what `chain` returned (or null).
    pub(crate) unsafe fn update(&mut self, pool: *mut ngx_pool_t, out: *mut ngx_chain_t) {
        let mut out = out;
        let tag = std::ptr::addr_of!(OUT_TAG) as ngx_buf_tag_t;
        ngx_chain_update_chains(pool, &mut self.free, &mut self.busy, &mut out, tag);
    }
}

/// The last buffer of a chain.
///
/// # Safety
/// `cl` is a live, non-empty chain.
pub(crate) unsafe fn last_buf_of(cl: *mut ngx_chain_t) -> *mut ngx_buf_t {
    (*last_link(cl)).buf
}
