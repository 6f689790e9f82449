//! The cross-process store behind shared data, shared queues and metrics, laid out in one raw
//! memory region (an nginx shared-memory zone in production, a heap buffer in tests and in the
//! master's load-time check). Everything inside the region is addressed by offsets, never by
//! pointers, so every process may map it anywhere.
//!
//! Layout: a header (magic, lock, counters), a fixed table of metrics, a fixed table of
//! queues, a hash index, then a log-structured heap of records (shared-data entries and queue
//! items). Records are appended; an overwritten entry or a dequeued item is marked dead. When
//! the heap is full it is compacted (live records moved down, in order), and if that is not
//! enough the oldest live shared-data entries are evicted: the log is in write order, so these
//! are the least recently written. Queue items are never evicted. The index and the queues'
//! heads are rebuilt from the log after a compaction, which is also how the store recovers
//! when a process died holding the lock.
//!
//! Locking: a spin lock in the header holds the holder's pid. A waiter that sees the holder
//! gone (`kill(pid, 0)` fails with ESRCH, or its own pid outside the unit tests: a lock is
//! never held across calls) takes the lock over, validates the log (truncating at the first
//! malformed record) and rebuilds.
//! Metric values are atomics updated without the lock; queue sequence numbers are atomics
//! read without it (by the pollers).

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::abi::Status;

// 002: keyed index hash, flags and counters in the header. 003: host metric kinds (3..5) in
// the metrics table. A zone of another format (a reload into a newer build) is formatted anew.
const MAGIC: u64 = u64::from_le_bytes(*b"PWSHM003");
const HEADER: usize = 4096;

// Header fields (byte offsets).
const H_MAGIC: usize = 0;
const H_SIZE: usize = 8;
const H_LOCK: usize = 16;
const H_NEXT_CAS: usize = 20;
const H_N_METRICS: usize = 24;
const H_N_QUEUES: usize = 28;
const H_LOG_END: usize = 32;
const H_DEAD: usize = 40;
const H_EVICTIONS: usize = 48;
const H_INDEX_OFF: usize = 56;
const H_INDEX_CAP: usize = 64;
const H_HEAP_OFF: usize = 72;
const H_HEAP_LEN: usize = 80;
/// Flags word (atomic u32): F_RECOVER, F_COMPACTING.
const H_FLAGS: usize = 88;
/// Times recover() ran, and times it had to drop the heap.
const H_RECOVERIES: usize = 96;
const H_HEAP_DROPS: usize = 104;
const H_COMPACTIONS: usize = 112;
/// 128-bit key of the index hash, random per zone (format).
const H_SEED: usize = 128;
/// Heap bytes (whole records) held by queue items, all queues together.
const H_QBYTES: usize = 144;

/// A holder panicked (its process lives on): the next holder must repair before trusting.
const F_RECOVER: u32 = 1;
/// compact() is moving records: a holder dying now leaves the heap unwalkable.
const F_COMPACTING: u32 = 2;

/// Most metrics (of every module together).
pub const MAX_METRICS: usize = 1024;
/// Longest metric name, in bytes.
pub const MAX_METRIC_NAME: usize = 255;
const METRIC_SLOT: usize = 512;
const M_KIND: usize = 0;
const M_NAME_LEN: usize = 2;
const M_NAME: usize = 8;
const M_VALUE: usize = 264;
const M_SUM: usize = 272;
const M_COUNT: usize = 280;
const M_BUCKETS: usize = 288;
/// Upper bounds of the histogram buckets (a 1-2-5 series), plus +Inf.
pub const HISTOGRAM_BOUNDS: [u64; 19] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000,
];
const N_BUCKETS: usize = HISTOGRAM_BOUNDS.len() + 1;

/// Most queues (of every module together).
pub const MAX_QUEUES: usize = 256;
/// Most queues of one vm_id (keys sharing the part before the first NUL): one module cannot
/// take every queue slot from the others.
pub const MAX_QUEUES_PER_VM: usize = 64;
const QUEUE_SLOT: usize = 512;
const Q_SEQ: usize = 0;
const Q_LEN: usize = 8;
/// Heap bytes (whole records) of the queue's items.
const Q_BYTES: usize = 16;
const Q_HEAD: usize = 24;
const Q_NAME_LEN: usize = 32;
const Q_NAME: usize = 40;
/// Longest queue key (vm_id, NUL, name).
pub const MAX_QUEUE_NAME: usize = QUEUE_SLOT - Q_NAME;
/// Most items waiting in one queue.
pub const MAX_QUEUE_ITEMS: u64 = 10_000;
/// Share of the heap one queue's items may take (1/4), and all queues' items together (1/2):
/// a consumer that stopped must not starve shared data or the other queues.
const QUEUE_HEAP_DIV: u64 = 4;
const QUEUES_HEAP_DIV: u64 = 2;
const NO_HEAD: u64 = u64::MAX;

/// Longest shared-data key (with its vm_id prefix), and longest value or queue item.
pub const MAX_KEY: usize = 4096;
pub const MAX_VALUE: usize = 1 << 20;

const TABLES: usize = HEADER + MAX_METRICS * METRIC_SLOT + MAX_QUEUES * QUEUE_SLOT;
/// Smallest region the store accepts.
pub const MIN_SIZE: usize = 1 << 20;

// Records: [total u32][kind u8][live u8][key_len u16][val_len u32][hash or queue id u32][cas u64]
const R_HDR: usize = 24;
const KIND_KV: u8 = 1;
const KIND_ITEM: u8 = 2;

/// Metric types of the ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub fn from_i32(v: i32) -> Option<MetricKind> {
        match v {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// One metric as read for exposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSnapshot {
    pub name: Vec<u8>,
    pub kind: MetricKind,
    /// Counter and gauge value (a gauge may be negative).
    pub value: i64,
    pub sum: u64,
    pub count: u64,
    /// Per-bucket (not cumulative) counts, the last one being +Inf.
    pub buckets: Vec<u64>,
    /// A host metric (see `define_host_metric`): `name` is a whole series,
    /// `family{label="value",...}`, and a histogram's sum is in nanoseconds.
    pub host: bool,
}

/// Slots of host metrics carry their kind + HOST_KIND: a plugin's define_metric never
/// matches them and its metric calls never reach them.
const HOST_KIND: u8 = 3;

/// A handle on a store region. Cheap to share (`Arc`); every method takes `&self`.
pub struct SharedStore {
    base: *mut u8,
    len: usize,
    pid: u32,
    /// Repairs not yet reported (take_events), this process only.
    events: std::sync::Mutex<Vec<Event>>,
    /// Owns the memory when the store lives on the heap (tests, the master's check).
    _owned: Option<Box<[u64]>>,
}

// SAFETY: the region is meant to be used concurrently by several processes: every mutable
// access to it goes through the in-region lock or through atomics, so using one handle from
// several threads is no different from several processes.
unsafe impl Send for SharedStore {}
// SAFETY: as above.
unsafe impl Sync for SharedStore {}

/// SipHash-2-4 of `key` under `seed`: plugins pass keys from remote clients, and with an
/// unkeyed hash those could be chosen to land in one probe cluster of the open-addressing
/// index (every lookup then walks it, under the lock that every worker waits on).
fn keyed_hash(seed: (u64, u64), key: &[u8]) -> u64 {
    use std::hash::Hasher;
    // std's SipHasher is deprecated only in favour of RandomState, which is per-process: the
    // hash must be the same in every worker, hence an explicit key stored in the zone.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(seed.0, seed.1);
    h.write(key);
    h.finish()
}

/// A random seed for a new zone; the time and pid if the OS has no randomness to give.
fn new_seed() -> (u64, u64) {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    let (lo, hi) = b.split_at(8);
    (u64::from_le_bytes(lo.try_into().expect("8 bytes")), u64::from_le_bytes(hi.try_into().expect("8 bytes")))
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// (index offset, index capacity, heap offset, heap length) of a region of `len` bytes: a
/// function of the size only, so recover() can check the header against it.
fn layout(len: usize) -> (usize, usize, usize, usize) {
    let rest = len - TABLES;
    // One index slot per 16 heap bytes, while a record takes at least 24: the index can
    // never fill up, so probing always ends on an empty slot (load <= 2/3).
    let index_cap = (rest / 5 / 4).max(16);
    let heap_off = align8(TABLES + index_cap * 4);
    (TABLES, index_cap, heap_off, len - heap_off)
}

/// Repairs a store made, for the embedder to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A lock holder died or panicked: the log was checked (truncated at the first malformed
    /// record) and the index and queues rebuilt.
    Recovered,
    /// A lock holder died mid-compaction (or the header was corrupt): every shared-data entry
    /// and queue item was dropped.
    HeapDropped,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Event::Recovered => "shared memory zone: a process died or panicked holding its lock; repaired (the operation in progress may be lost)",
            Event::HeapDropped => "shared memory zone: a process died or panicked while compacting it; every shared data entry and queue item was dropped",
        })
    }
}

/// Whether process `pid` exists. kill(pid, 0) rather than /proc: /proc may be unmounted (or
/// another pid namespace's) in a container. Only ESRCH means gone: EPERM is a live process
/// of another user.
fn pid_alive(pid: u32) -> bool {
    // Not a pid a process can have (kill would read it as a process group): nobody holds it.
    let Ok(p) = i32::try_from(pid) else { return false };
    if p <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    if unsafe { libc::kill(p, 0) } == 0 {
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Held lock; released on drop (also when a panic unwinds through the holder).
struct Guard<'a>(&'a SharedStore);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // A panic may have left a half-done operation behind (the store's own asserts firing
        // on corrupt offsets, say): whoever takes the lock next repairs first.
        if std::thread::panicking() {
            self.0.atomic_u32(H_FLAGS).fetch_or(F_RECOVER, Ordering::Relaxed);
        }
        self.0.atomic_u32(H_LOCK).store(0, Ordering::Release);
    }
}

impl SharedStore {
    /// A store in its own heap memory of `size` bytes (at least MIN_SIZE).
    pub fn new_private(size: usize) -> SharedStore {
        let size = size.max(MIN_SIZE) & !7;
        let mut owned = vec![0u64; size / 8].into_boxed_slice();
        let base = owned.as_mut_ptr() as *mut u8;
        // SAFETY: `owned` is a live allocation of `size` bytes, 8-aligned, kept in the handle.
        let mut s = unsafe { SharedStore::attach(base, size) }.expect("size checked above");
        s._owned = Some(owned);
        s
    }

    /// Uses the region at `base..base+len`: keeps its contents if it holds a store of this
    /// size (a reload reusing the zone, or a worker after fork), formats it otherwise.
    ///
    /// # Safety
    /// `base` must be 8-aligned, valid for reads and writes of `len` bytes for as long as the
    /// handle lives, and touched by nothing but `SharedStore` handles.
    pub unsafe fn attach(base: *mut u8, len: usize) -> Result<SharedStore, String> {
        if len < MIN_SIZE {
            return Err(format!("the shared memory zone needs at least {MIN_SIZE} bytes"));
        }
        if !(base as usize).is_multiple_of(8) {
            return Err("the shared memory zone is not 8-byte aligned".into());
        }
        let s = SharedStore { base, len: len & !7, pid: std::process::id(), events: Default::default(), _owned: None };
        if s.get_u64(H_MAGIC) != MAGIC || s.get_u64(H_SIZE) != s.len as u64 {
            s.format();
        }
        Ok(s)
    }

    /// Uses the region at `base..base+len` only if it already holds a store of this size
    /// (another embedder's zone, read by this one): never formats it.
    ///
    /// # Safety
    /// As `attach`.
    pub unsafe fn open_existing(base: *mut u8, len: usize) -> Result<SharedStore, String> {
        if len < MIN_SIZE || !(base as usize).is_multiple_of(8) {
            return Err("not a shared store region".into());
        }
        let s = SharedStore { base, len: len & !7, pid: std::process::id(), events: Default::default(), _owned: None };
        if s.get_u64(H_MAGIC) != MAGIC || s.get_u64(H_SIZE) != s.len as u64 {
            return Err("the region holds no shared store".into());
        }
        Ok(s)
    }

    /// The region's size in bytes.
    pub fn size(&self) -> usize {
        self.len
    }

    fn format(&self) {
        // SAFETY: the region is ours (attach's contract) and not yet shared with anyone who
        // could read it as a store (no magic yet).
        unsafe { std::ptr::write_bytes(self.base, 0, TABLES) };
        let (index_off, index_cap, heap_off, heap_len) = layout(self.len);
        self.set_u64(H_INDEX_OFF, index_off as u64);
        self.set_u64(H_INDEX_CAP, index_cap as u64);
        self.set_u64(H_HEAP_OFF, heap_off as u64);
        self.set_u64(H_HEAP_LEN, heap_len as u64);
        self.set_u32(H_NEXT_CAS, 1);
        let (k0, k1) = new_seed();
        self.set_u64(H_SEED, k0);
        self.set_u64(H_SEED + 8, k1);
        self.clear_index();
        self.set_u64(H_SIZE, self.len as u64);
        self.atomic_u64(H_MAGIC).store(MAGIC, Ordering::Release);
    }

    // --- raw access -------------------------------------------------------------------

    // Offsets may come from the shared region (written by another process, possibly one that
    // died mid-write): the bounds checks are real in release builds too (cheap next to the
    // lock), so a corrupt offset panics instead of touching memory outside the region.

    fn get_u64(&self, off: usize) -> u64 {
        assert!(off <= self.len && self.len - off >= 8);
        // SAFETY: off is inside the region (layout constants and checked record offsets).
        unsafe { std::ptr::read_unaligned(self.base.add(off) as *const u64) }
    }
    fn set_u64(&self, off: usize, v: u64) {
        assert!(off <= self.len && self.len - off >= 8);
        // SAFETY: as get_u64; writers hold the lock (or own the unformatted region).
        unsafe { std::ptr::write_unaligned(self.base.add(off) as *mut u64, v) }
    }
    fn get_u32(&self, off: usize) -> u32 {
        assert!(off <= self.len && self.len - off >= 4);
        // SAFETY: as get_u64.
        unsafe { std::ptr::read_unaligned(self.base.add(off) as *const u32) }
    }
    fn set_u32(&self, off: usize, v: u32) {
        assert!(off <= self.len && self.len - off >= 4);
        // SAFETY: as set_u64.
        unsafe { std::ptr::write_unaligned(self.base.add(off) as *mut u32, v) }
    }
    fn get_u8(&self, off: usize) -> u8 {
        assert!(off < self.len);
        // SAFETY: as get_u64.
        unsafe { *self.base.add(off) }
    }
    fn set_u8(&self, off: usize, v: u8) {
        assert!(off < self.len);
        // SAFETY: as set_u64.
        unsafe { *self.base.add(off) = v }
    }
    fn get_u16(&self, off: usize) -> u16 {
        assert!(off <= self.len && self.len - off >= 2);
        // SAFETY: as get_u64.
        unsafe { std::ptr::read_unaligned(self.base.add(off) as *const u16) }
    }
    fn set_u16(&self, off: usize, v: u16) {
        assert!(off <= self.len && self.len - off >= 2);
        // SAFETY: as set_u64.
        unsafe { std::ptr::write_unaligned(self.base.add(off) as *mut u16, v) }
    }
    fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(off <= self.len && self.len - off >= len);
        // SAFETY: in bounds (asserted); callers hold the lock, so no process writes these bytes
        // while the slice is alive, or they are immutable once published (names).
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        assert!(off <= self.len && self.len - off >= data.len());
        // SAFETY: in bounds (asserted); the caller holds the lock; `data` is host memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off), data.len()) }
    }
    fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len);
        // SAFETY: aligned and in bounds (asserted); this word is only ever accessed atomically.
        unsafe { AtomicU32::from_ptr(self.base.add(off) as *mut u32) }
    }
    fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: aligned and in bounds (asserted); this word is only accessed atomically once
        // the region is published.
        unsafe { AtomicU64::from_ptr(self.base.add(off) as *mut u64) }
    }
    fn atomic_i64(&self, off: usize) -> &AtomicI64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        // SAFETY: as atomic_u64.
        unsafe { AtomicI64::from_ptr(self.base.add(off) as *mut i64) }
    }

    // --- lock -------------------------------------------------------------------------

    fn lock(&self) -> Guard<'_> {
        let lock = self.atomic_u32(H_LOCK);
        let me = self.pid.max(1);
        let mut spins: u32 = 0;
        loop {
            let holder = match lock.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => {
                    let g = Guard(self);
                    if self.atomic_u32(H_FLAGS).load(Ordering::Relaxed) & (F_RECOVER | F_COMPACTING) != 0 {
                        self.recover();
                    }
                    return g;
                }
                Err(h) => h,
            };
            // The lock is never held across calls and a worker uses the store from one thread,
            // so our own pid in the lock word is a previous process that had our (reused) pid
            // and died holding it. (The unit tests share one pid among threads: not there.)
            let stale_self = !cfg!(test) && holder == me;
            spins = spins.wrapping_add(1);
            if !stale_self && !spins.is_multiple_of(256) {
                std::hint::spin_loop();
                continue;
            }
            // A holder that is gone will never release it: take over and repair.
            if holder != 0
                && (stale_self || !pid_alive(holder))
                && lock.compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                let g = Guard(self);
                self.recover();
                return g;
            }
            std::thread::yield_now();
        }
    }

    /// Makes the log walkable again after a holder died mid-operation (or panicked), then
    /// rebuilds every derived structure from it. Trusts nothing read from the region: a
    /// layout that is not the one format() writes for this size, or a compaction cut short,
    /// drops the whole heap (every entry and queue item; metrics and the queue table stay).
    fn recover(&self) {
        self.set_u64(H_RECOVERIES, self.get_u64(H_RECOVERIES).wrapping_add(1));
        let flags = self.atomic_u32(H_FLAGS).load(Ordering::Relaxed);
        let (index_off, index_cap, heap_off, heap_len) = layout(self.len);
        let layout_ok = self.get_u64(H_INDEX_OFF) == index_off as u64
            && self.get_u64(H_INDEX_CAP) == index_cap as u64
            && self.get_u64(H_HEAP_OFF) == heap_off as u64
            && self.get_u64(H_HEAP_LEN) == heap_len as u64;
        // Equal to format()'s layout, so also: index_off + cap*4 <= heap_off and
        // heap_off + heap_len == len.
        debug_assert!(index_off + index_cap * 4 <= heap_off && heap_off + heap_len == self.len);
        let drop_heap = flags & F_COMPACTING != 0 || !layout_ok;
        let mut end = 0;
        if drop_heap {
            self.set_u64(H_INDEX_OFF, index_off as u64);
            self.set_u64(H_INDEX_CAP, index_cap as u64);
            self.set_u64(H_HEAP_OFF, heap_off as u64);
            self.set_u64(H_HEAP_LEN, heap_len as u64);
            self.set_u64(H_HEAP_DROPS, self.get_u64(H_HEAP_DROPS).wrapping_add(1));
        } else {
            end = (self.get_u64(H_LOG_END) as usize).min(heap_len);
            let mut off = 0;
            while off < end {
                let h = heap_off + off;
                // Room for the header itself before reading it.
                if end - off < R_HDR {
                    end = off;
                    break;
                }
                let total = self.get_u32(h) as usize;
                let kind = self.get_u8(h + 4);
                let live = self.get_u8(h + 5);
                let key_len = self.get_u16(h + 6) as usize;
                let val_len = self.get_u32(h + 8) as usize;
                let need = R_HDR + key_len + val_len;
                let sane = match kind {
                    KIND_KV => key_len <= MAX_KEY && val_len <= MAX_VALUE,
                    KIND_ITEM => key_len == 0 && val_len <= MAX_VALUE,
                    _ => false,
                };
                if !sane || live > 1 || total < R_HDR || !total.is_multiple_of(8) || total > end - off || need > total {
                    end = off;
                    break;
                }
                off += total;
            }
        }
        self.set_u64(H_LOG_END, end as u64);
        self.atomic_u32(H_N_METRICS).fetch_min(MAX_METRICS as u32, Ordering::Relaxed);
        self.atomic_u32(H_N_QUEUES).fetch_min(MAX_QUEUES as u32, Ordering::Relaxed);
        self.atomic_u32(H_FLAGS).fetch_and(!(F_RECOVER | F_COMPACTING), Ordering::Relaxed);
        // Also resets every queue's head, length and bytes from what is left (nothing when
        // the heap was dropped).
        self.compact();
        if drop_heap {
            // Pollers compare sequence numbers: bump them so no worker keeps waiting on items
            // that are gone (they get EMPTY, as when another worker won them).
            let nq = self.atomic_u32(H_N_QUEUES).load(Ordering::Relaxed) as usize;
            for q in 0..nq {
                self.atomic_u64(self.queue_slot(q) + Q_SEQ).fetch_add(1, Ordering::Release);
            }
        }
        self.note(if drop_heap {
            Event::HeapDropped
        } else {
            Event::Recovered
        });
    }

    /// Records an event for the embedder to log (see take_events).
    fn note(&self, e: Event) {
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if ev.len() < 16 {
            ev.push(e);
        }
    }

    /// What the store had to repair since the last call, in this process (for the embedder to
    /// log: the store itself has no logger).
    pub fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Times the store was repaired after a dead or panicking lock holder, and how many of
    /// those dropped every entry and queue item (zone-wide, since the zone was created).
    pub fn recoveries(&self) -> (u64, u64) {
        let _g = self.lock();
        (self.get_u64(H_RECOVERIES), self.get_u64(H_HEAP_DROPS))
    }

    // --- heap and index -----------------------------------------------------------------

    fn heap_off(&self) -> usize {
        self.get_u64(H_HEAP_OFF) as usize
    }

    fn clear_index(&self) {
        let (off, cap) = (self.get_u64(H_INDEX_OFF) as usize, self.get_u64(H_INDEX_CAP) as usize);
        assert!(off <= self.len && cap <= (self.len - off) / 4);
        // SAFETY: the index lies inside the region (format); the caller holds the lock.
        unsafe { std::ptr::write_bytes(self.base.add(off), 0, cap * 4) };
    }

    fn hash(&self, key: &[u8]) -> u64 {
        keyed_hash((self.get_u64(H_SEED), self.get_u64(H_SEED + 8)), key)
    }

    /// Index slot holding `key`, or the empty slot where it would go. `hash` is self.hash(key):
    /// its low bits pick the slot, its high 32 bits are the tag kept in the record.
    fn find_slot(&self, key: &[u8], hash: u64) -> (usize, Option<usize>) {
        let (ioff, cap) = (self.get_u64(H_INDEX_OFF) as usize, self.get_u64(H_INDEX_CAP) as usize);
        let tag = (hash >> 32) as u32;
        let mut i = (hash % cap as u64) as usize;
        loop {
            let slot = ioff + i * 4;
            let v = self.get_u32(slot);
            if v == 0 {
                return (slot, None);
            }
            let rec = v as usize - 1;
            let h = self.heap_off() + rec;
            if self.get_u32(h + 12) == tag && self.bytes(h + R_HDR, self.get_u16(h + 6) as usize) == key {
                return (slot, Some(rec));
            }
            i = (i + 1) % cap;
        }
    }

    fn append(&self, kind: u8, key: &[u8], val: &[u8], tag: u32, cas: u64) -> usize {
        let total = align8(R_HDR + key.len() + val.len());
        let rec = self.get_u64(H_LOG_END) as usize;
        let h = self.heap_off() + rec;
        self.set_u8(h + 4, kind);
        self.set_u8(h + 5, 1);
        self.set_u16(h + 6, key.len() as u16);
        self.set_u32(h + 8, val.len() as u32);
        self.set_u32(h + 12, tag);
        self.set_u64(h + 16, cas);
        self.write_bytes(h + R_HDR, key);
        self.write_bytes(h + R_HDR + key.len(), val);
        // The length goes last and the end moves after it: a reader recovering from a death
        // mid-append never walks into half a record.
        self.set_u32(h, total as u32);
        self.set_u64(H_LOG_END, (rec + total) as u64);
        rec
    }

    fn kill(&self, rec: usize) {
        let h = self.heap_off() + rec;
        if self.get_u8(h + 5) == 1 {
            self.set_u8(h + 5, 0);
            self.set_u64(H_DEAD, self.get_u64(H_DEAD) + u64::from(self.get_u32(h)));
        }
    }

    fn free(&self) -> usize {
        (self.get_u64(H_HEAP_LEN) - self.get_u64(H_LOG_END)) as usize
    }

    /// Moves live records down (keeping their order) and rebuilds the index and the queues.
    fn compact(&self) {
        let heap = self.heap_off();
        let end = self.get_u64(H_LOG_END) as usize;
        // Records are moved over each other: a death from here to the flag's clearing leaves
        // half-moved bytes, which recover() must not walk (it drops the heap instead).
        self.atomic_u32(H_FLAGS).fetch_or(F_COMPACTING, Ordering::Relaxed);
        self.set_u64(H_COMPACTIONS, self.get_u64(H_COMPACTIONS).wrapping_add(1));
        let (mut src, mut dst) = (0, 0);
        while src < end {
            let total = self.get_u32(heap + src) as usize;
            // A zero-length record would loop forever; recover() guarantees none is reachable.
            assert!(total >= R_HDR && heap + src + total <= self.len);
            if self.get_u8(heap + src + 5) == 1 {
                if src != dst {
                    // SAFETY: both ranges are inside the region (asserted, dst < src); copy
                    // handles the overlap.
                    unsafe { std::ptr::copy(self.base.add(heap + src), self.base.add(heap + dst), total) };
                }
                dst += total;
            }
            src += total;
        }
        self.set_u64(H_LOG_END, dst as u64);
        self.set_u64(H_DEAD, 0);
        self.atomic_u32(H_FLAGS).fetch_and(!F_COMPACTING, Ordering::Relaxed);
        self.rebuild();
    }

    /// Index, queue lengths and heads from the log. A key found twice (only after a recovery)
    /// keeps its later record.
    fn rebuild(&self) {
        self.clear_index();
        self.set_u64(H_QBYTES, 0);
        let nq = self.atomic_u32(H_N_QUEUES).load(Ordering::Relaxed) as usize;
        for q in 0..nq {
            let s = self.queue_slot(q);
            self.set_u64(s + Q_LEN, 0);
            self.set_u64(s + Q_BYTES, 0);
            self.set_u64(s + Q_HEAD, NO_HEAD);
        }
        let heap = self.heap_off();
        let end = self.get_u64(H_LOG_END) as usize;
        let mut off = 0;
        while off < end {
            let h = heap + off;
            let total = self.get_u32(h) as usize;
            // recover() and compact() leave only well-formed records; never spin on a zero.
            assert!(total >= R_HDR, "malformed record in the shared memory zone");
            if self.get_u8(h + 5) == 1 {
                if self.get_u8(h + 4) == KIND_KV {
                    let key = self.bytes(h + R_HDR, self.get_u16(h + 6) as usize).to_vec();
                    // Hashed again rather than trusting the stored tag (this also runs in
                    // recovery): the tag must agree with the key for lookups to find it.
                    let hash = self.hash(&key);
                    self.set_u32(h + 12, (hash >> 32) as u32);
                    let (slot, old) = self.find_slot(&key, hash);
                    if let Some(old) = old {
                        self.kill(old);
                    }
                    self.set_u32(slot, off as u32 + 1);
                } else {
                    let q = self.get_u32(h + 12) as usize;
                    if q >= 1 && q <= nq {
                        let s = self.queue_slot(q - 1);
                        self.set_u64(s + Q_LEN, self.get_u64(s + Q_LEN) + 1);
                        self.set_u64(s + Q_BYTES, self.get_u64(s + Q_BYTES) + total as u64);
                        self.set_u64(H_QBYTES, self.get_u64(H_QBYTES) + total as u64);
                        if self.get_u64(s + Q_HEAD) == NO_HEAD {
                            self.set_u64(s + Q_HEAD, off as u64);
                        }
                    } else {
                        self.kill(off);
                    }
                }
            }
            off += total;
        }
    }

    /// Makes room for `need` bytes: compacts, then (if `may_evict`) evicts the least recently
    /// written entries. Returns how many were evicted. Evicts nothing when even all of them
    /// would not do.
    ///
    /// Hysteresis: a compaction moves every live record, so once the zone is full it must win
    /// more than the one write at hand, else a steady stream of new keys would move the whole
    /// heap on every write. It runs only when it frees at least max(need, heap/16), and
    /// eviction goes on until that much is free.
    fn ensure_space(&self, need: usize, may_evict: bool) -> Result<u64, Status> {
        let heap_len = self.get_u64(H_HEAP_LEN) as usize;
        if need > heap_len / 2 {
            return Err(Status::BadArgument);
        }
        if self.free() >= need {
            return Ok(0);
        }
        let target = need.max(heap_len / 16);
        let dead = self.get_u64(H_DEAD) as usize;
        if self.free() + dead >= target || (!may_evict && self.free() + dead >= need) {
            self.compact();
            return Ok(0);
        }
        if !may_evict {
            return Err(Status::InternalFailure);
        }
        let heap = self.heap_off();
        let end = self.get_u64(H_LOG_END) as usize;
        let live_entries = |mut f: Box<dyn FnMut(usize, usize) -> bool + '_>| {
            let mut off = 0;
            while off < end {
                let h = heap + off;
                let total = self.get_u32(h) as usize;
                // A zero-length record would spin here forever under the lock.
                assert!(total >= R_HDR, "malformed record in the shared memory zone");
                if self.get_u8(h + 4) == KIND_KV && self.get_u8(h + 5) == 1 && !f(off, total) {
                    break;
                }
                off += total;
            }
        };
        let mut evictable = 0;
        live_entries(Box::new(|_, total| {
            evictable += total;
            true
        }));
        if self.free() + dead + evictable < need {
            return Err(Status::InternalFailure);
        }
        // The log is in write order: its oldest live entries were written least recently.
        let mut evicted = 0u64;
        live_entries(Box::new(|off, _| {
            self.kill(off);
            evicted += 1;
            self.free() + (self.get_u64(H_DEAD) as usize) < target
        }));
        self.set_u64(H_EVICTIONS, self.get_u64(H_EVICTIONS) + evicted);
        self.compact();
        Ok(evicted)
    }

    // --- shared data --------------------------------------------------------------------

    /// The value and cas of `key`. NOT_FOUND also for a key past MAX_KEY: none can exist
    /// (and the Rust SDK panics on BAD_ARGUMENT from a get).
    pub fn get(&self, key: &[u8]) -> Result<(Vec<u8>, u32), Status> {
        if key.len() > MAX_KEY {
            return Err(Status::NotFound);
        }
        let _g = self.lock();
        let (_, rec) = self.find_slot(key, self.hash(key));
        let rec = rec.ok_or(Status::NotFound)?;
        let h = self.heap_off() + rec;
        let val = self.bytes(h + R_HDR + key.len(), self.get_u32(h + 8) as usize).to_vec();
        Ok((val, self.get_u64(h + 16) as u32))
    }

    /// Envoy's semantics: cas 0 writes unconditionally; a nonzero cas must be the entry's
    /// current one (CAS_MISMATCH otherwise); a missing key is created whatever the cas.
    /// BAD_ARGUMENT past the size bounds; INTERNAL_FAILURE if the zone cannot hold it even
    /// after evicting. Returns how many entries were evicted to make room.
    pub fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<u64, Status> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(Status::BadArgument);
        }
        let _g = self.lock();
        let hash = self.hash(key);
        if cas != 0 {
            if let (_, Some(rec)) = self.find_slot(key, hash) {
                if self.get_u64(self.heap_off() + rec + 16) as u32 != cas {
                    return Err(Status::CasMismatch);
                }
            }
        }
        let evicted = self.ensure_space(align8(R_HDR + key.len() + value.len()), true)?;
        let mut next = self.get_u32(H_NEXT_CAS);
        if next == 0 {
            next = 1;
        }
        self.set_u32(H_NEXT_CAS, next.wrapping_add(1));
        // Compaction may have moved (or eviction removed) the old record: look it up again.
        let (slot, old) = self.find_slot(key, hash);
        if let Some(old) = old {
            self.kill(old);
        }
        let rec = self.append(KIND_KV, key, value, (hash >> 32) as u32, u64::from(next));
        self.set_u32(slot, rec as u32 + 1);
        Ok(evicted)
    }

    /// Entries evicted since the zone was created.
    pub fn evictions(&self) -> u64 {
        let _g = self.lock();
        self.get_u64(H_EVICTIONS)
    }

    // --- queues -------------------------------------------------------------------------

    fn queue_slot(&self, i: usize) -> usize {
        HEADER + MAX_METRICS * METRIC_SLOT + i * QUEUE_SLOT
    }

    fn find_queue(&self, key: &[u8]) -> Option<u32> {
        let n = self.atomic_u32(H_N_QUEUES).load(Ordering::Acquire) as usize;
        (0..n.min(MAX_QUEUES))
            .find(|&i| {
                let s = self.queue_slot(i);
                self.bytes(s + Q_NAME, self.get_u16(s + Q_NAME_LEN) as usize) == key
            })
            .map(|i| i as u32 + 1)
    }

    /// The id of queue `key` (vm_id NUL name), created if needed: the same in every process.
    pub fn register_queue(&self, key: &[u8]) -> Result<u32, Status> {
        if key.len() > MAX_QUEUE_NAME {
            return Err(Status::BadArgument);
        }
        let _g = self.lock();
        if let Some(id) = self.find_queue(key) {
            return Ok(id);
        }
        let n = self.atomic_u32(H_N_QUEUES).load(Ordering::Relaxed) as usize;
        if n >= MAX_QUEUES {
            return Err(Status::InternalFailure);
        }
        let vm = |k: &[u8]| k.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
        let own = vm(key);
        let mine = (0..n)
            .filter(|&i| {
                let s = self.queue_slot(i);
                vm(self.bytes(s + Q_NAME, self.get_u16(s + Q_NAME_LEN) as usize)) == own
            })
            .count();
        if mine >= MAX_QUEUES_PER_VM {
            return Err(Status::InternalFailure);
        }
        let s = self.queue_slot(n);
        self.set_u64(s + Q_LEN, 0);
        self.set_u64(s + Q_BYTES, 0);
        self.set_u64(s + Q_HEAD, NO_HEAD);
        self.set_u16(s + Q_NAME_LEN, key.len() as u16);
        self.write_bytes(s + Q_NAME, key);
        self.atomic_u32(H_N_QUEUES).store(n as u32 + 1, Ordering::Release);
        Ok(n as u32 + 1)
    }

    pub fn resolve_queue(&self, key: &[u8]) -> Option<u32> {
        let _g = self.lock();
        self.find_queue(key)
    }

    fn queue_index(&self, id: u32) -> Result<usize, Status> {
        let n = self.atomic_u32(H_N_QUEUES).load(Ordering::Acquire);
        if id == 0 || id > n {
            return Err(Status::NotFound);
        }
        Ok(id as usize - 1)
    }

    /// Appends an item. NOT_FOUND for an unknown id; BAD_ARGUMENT past MAX_VALUE;
    /// INTERNAL_FAILURE when the queue holds MAX_QUEUE_ITEMS, its items would take more than
    /// a quarter of the heap, all queues' items more than half, or the zone is full (queue
    /// items never evict shared-data entries). Returns how many entries were evicted: 0.
    pub fn enqueue(&self, id: u32, data: &[u8]) -> Result<u64, Status> {
        let q = self.queue_index(id)?;
        if data.len() > MAX_VALUE {
            return Err(Status::BadArgument);
        }
        let _g = self.lock();
        let s = self.queue_slot(q);
        if self.get_u64(s + Q_LEN) >= MAX_QUEUE_ITEMS {
            return Err(Status::InternalFailure);
        }
        let total = align8(R_HDR + data.len());
        let heap_len = self.get_u64(H_HEAP_LEN);
        if self.get_u64(s + Q_BYTES) + total as u64 > heap_len / QUEUE_HEAP_DIV
            || self.get_u64(H_QBYTES) + total as u64 > heap_len / QUEUES_HEAP_DIV
        {
            return Err(Status::InternalFailure);
        }
        let evicted = self.ensure_space(total, false)?;
        let rec = self.append(KIND_ITEM, &[], data, id, 0);
        self.set_u64(s + Q_LEN, self.get_u64(s + Q_LEN) + 1);
        self.set_u64(s + Q_BYTES, self.get_u64(s + Q_BYTES) + total as u64);
        self.set_u64(H_QBYTES, self.get_u64(H_QBYTES) + total as u64);
        if self.get_u64(s + Q_HEAD) == NO_HEAD {
            self.set_u64(s + Q_HEAD, rec as u64);
        }
        self.atomic_u64(s + Q_SEQ).fetch_add(1, Ordering::Release);
        Ok(evicted)
    }

    /// Takes the oldest item. NOT_FOUND for an unknown id, EMPTY when there is none.
    pub fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let q = self.queue_index(id)?;
        let _g = self.lock();
        let s = self.queue_slot(q);
        if self.get_u64(s + Q_LEN) == 0 {
            return Err(Status::Empty);
        }
        let heap = self.heap_off();
        let end = self.get_u64(H_LOG_END) as usize;
        let mut off = match self.get_u64(s + Q_HEAD) {
            NO_HEAD => 0,
            h => h as usize,
        };
        while off < end {
            let h = heap + off;
            let total = self.get_u32(h) as usize;
            // A corrupt head or record: panic (the guard marks the zone for recovery) rather
            // than spin forever under the lock on a zero length.
            assert!(total >= R_HDR, "malformed record in the shared memory zone");
            if self.get_u8(h + 4) == KIND_ITEM && self.get_u8(h + 5) == 1 && self.get_u32(h + 12) == id {
                let data = self.bytes(h + R_HDR, self.get_u32(h + 8) as usize).to_vec();
                self.kill(off);
                let len = self.get_u64(s + Q_LEN) - 1;
                self.set_u64(s + Q_LEN, len);
                self.set_u64(s + Q_BYTES, self.get_u64(s + Q_BYTES).saturating_sub(total as u64));
                self.set_u64(H_QBYTES, self.get_u64(H_QBYTES).saturating_sub(total as u64));
                // Items are in order: the next one of this queue is further on.
                self.set_u64(s + Q_HEAD, if len == 0 { NO_HEAD } else { (off + total) as u64 });
                return Ok(data);
            }
            off += total;
        }
        // The counters disagree with the log (cannot happen short of a recovery): trust the log.
        self.set_u64(s + Q_LEN, 0);
        self.set_u64(s + Q_HEAD, NO_HEAD);
        Err(Status::Empty)
    }

    /// Bumped by every enqueue; read without the lock by the pollers.
    pub fn queue_seq(&self, id: u32) -> Option<u64> {
        let q = self.queue_index(id).ok()?;
        Some(self.atomic_u64(self.queue_slot(q) + Q_SEQ).load(Ordering::Acquire))
    }

    /// Items waiting in queue `id`.
    pub fn queue_len(&self, id: u32) -> Option<u64> {
        let q = self.queue_index(id).ok()?;
        let _g = self.lock();
        Some(self.get_u64(self.queue_slot(q) + Q_LEN))
    }

    // --- metrics ------------------------------------------------------------------------

    fn metric_slot(&self, i: usize) -> usize {
        HEADER + i * METRIC_SLOT
    }

    /// The id of metric (`kind`, `name`), created if needed: the same in every process. As in
    /// Envoy, one name may be defined with several types (distinct metrics). BAD_ARGUMENT for
    /// an empty or too long name.
    pub fn define_metric(&self, kind: MetricKind, name: &[u8]) -> Result<u32, Status> {
        self.define_slot(kind as u8, name)
    }

    /// The id of a host metric: `series` is `family{label="value",...}` (the embedder's
    /// per-filter figures); plugins cannot see or change it. Same errors as define_metric.
    pub fn define_host_metric(&self, kind: MetricKind, series: &[u8]) -> Result<u32, Status> {
        self.define_slot(kind as u8 + HOST_KIND, series)
    }

    fn define_slot(&self, kind: u8, name: &[u8]) -> Result<u32, Status> {
        if name.is_empty() || name.len() > MAX_METRIC_NAME {
            return Err(Status::BadArgument);
        }
        let _g = self.lock();
        let n = self.atomic_u32(H_N_METRICS).load(Ordering::Relaxed) as usize;
        for i in 0..n {
            let s = self.metric_slot(i);
            if self.get_u8(s + M_KIND) == kind && self.bytes(s + M_NAME, self.get_u16(s + M_NAME_LEN) as usize) == name {
                return Ok(i as u32 + 1);
            }
        }
        if n >= MAX_METRICS {
            return Err(Status::InternalFailure);
        }
        let s = self.metric_slot(n);
        // SAFETY: the slot is in the metrics table and unpublished (index >= n).
        unsafe { std::ptr::write_bytes(self.base.add(s), 0, METRIC_SLOT) };
        self.set_u8(s + M_KIND, kind);
        self.set_u16(s + M_NAME_LEN, name.len() as u16);
        self.write_bytes(s + M_NAME, name);
        self.atomic_u32(H_N_METRICS).store(n as u32 + 1, Ordering::Release);
        Ok(n as u32 + 1)
    }

    /// Slot offset, kind and whether it is a host metric.
    fn slot_of(&self, id: u32) -> Result<(usize, MetricKind, bool), Status> {
        let n = self.atomic_u32(H_N_METRICS).load(Ordering::Acquire);
        if id == 0 || id > n {
            return Err(Status::NotFound);
        }
        let s = self.metric_slot(id as usize - 1);
        let k = self.get_u8(s + M_KIND);
        let (k, host) = if k >= HOST_KIND { (k - HOST_KIND, true) } else { (k, false) };
        let kind = match k {
            0 => MetricKind::Counter,
            1 => MetricKind::Gauge,
            _ => MetricKind::Histogram,
        };
        Ok((s, kind, host))
    }

    /// A plugin's metric: host metrics are NOT_FOUND to plugins.
    fn metric(&self, id: u32) -> Result<(usize, MetricKind), Status> {
        match self.slot_of(id)? {
            (_, _, true) => Err(Status::NotFound),
            (s, kind, false) => Ok((s, kind)),
        }
    }

    fn host_metric(&self, id: u32) -> Option<(usize, MetricKind)> {
        match self.slot_of(id) {
            Ok((s, kind, true)) => Some((s, kind)),
            _ => None,
        }
    }

    /// Adds `delta` to a host counter (saturating) or gauge.
    pub fn host_add(&self, id: u32, delta: i64) {
        match self.host_metric(id) {
            Some((s, MetricKind::Counter)) => self.add_saturating(s + M_VALUE, delta.max(0)),
            Some((s, MetricKind::Gauge)) => {
                self.atomic_i64(s + M_VALUE).fetch_add(delta, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Adds observations to a host histogram: per-bucket counts (bounds HISTOGRAM_BOUNDS,
    /// then +Inf) and their sum.
    pub fn host_observe(&self, id: u32, buckets: &[u64], sum: u64) {
        let Some((s, MetricKind::Histogram)) = self.host_metric(id) else { return };
        let mut count = 0;
        for (b, &c) in buckets.iter().enumerate().take(N_BUCKETS) {
            if c > 0 {
                self.atomic_u64(s + M_BUCKETS + b * 8).fetch_add(c, Ordering::Relaxed);
                count += c;
            }
        }
        self.atomic_u64(s + M_SUM).fetch_add(sum, Ordering::Relaxed);
        self.atomic_u64(s + M_COUNT).fetch_add(count, Ordering::Relaxed);
    }

    /// Envoy's semantics: a counter only grows (BAD_ARGUMENT for a negative delta), a gauge
    /// moves either way, a histogram cannot be incremented (BAD_ARGUMENT).
    pub fn increment_metric(&self, id: u32, delta: i64) -> Result<(), Status> {
        let (s, kind) = self.metric(id)?;
        match kind {
            MetricKind::Counter if delta < 0 => Err(Status::BadArgument),
            MetricKind::Counter => {
                self.add_saturating(s + M_VALUE, delta);
                Ok(())
            }
            MetricKind::Gauge => {
                self.atomic_i64(s + M_VALUE).fetch_add(delta, Ordering::Relaxed);
                Ok(())
            }
            MetricKind::Histogram => Err(Status::BadArgument),
        }
    }

    /// A counter stops at i64::MAX rather than wrapping negative (it only grows).
    fn add_saturating(&self, off: usize, delta: i64) {
        let _ = self.atomic_i64(off).fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_add(delta)));
    }

    /// Counter: adds (BAD_ARGUMENT past i64::MAX, which a counter cannot hold: the ABI's u64
    /// would read back negative); gauge: sets; histogram: records one observation.
    pub fn record_metric(&self, id: u32, value: u64) -> Result<(), Status> {
        let (s, kind) = self.metric(id)?;
        match kind {
            MetricKind::Counter => {
                let delta = i64::try_from(value).map_err(|_| Status::BadArgument)?;
                self.add_saturating(s + M_VALUE, delta);
            }
            MetricKind::Gauge => self.atomic_i64(s + M_VALUE).store(value as i64, Ordering::Relaxed),
            MetricKind::Histogram => {
                let b = HISTOGRAM_BOUNDS.iter().position(|&ub| value <= ub).unwrap_or(N_BUCKETS - 1);
                self.atomic_u64(s + M_BUCKETS + b * 8).fetch_add(1, Ordering::Relaxed);
                self.atomic_u64(s + M_SUM).fetch_add(value, Ordering::Relaxed);
                self.atomic_u64(s + M_COUNT).fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Counter or gauge value (a negative gauge in two's complement); BAD_ARGUMENT for a
    /// histogram, as in Envoy.
    pub fn get_metric(&self, id: u32) -> Result<u64, Status> {
        let (s, kind) = self.metric(id)?;
        match kind {
            MetricKind::Histogram => Err(Status::BadArgument),
            _ => Ok(self.atomic_i64(s + M_VALUE).load(Ordering::Relaxed) as u64),
        }
    }

    /// Every metric, in definition order.
    pub fn metrics(&self) -> Vec<MetricSnapshot> {
        let n = self.atomic_u32(H_N_METRICS).load(Ordering::Acquire) as usize;
        (1..=n.min(MAX_METRICS) as u32)
            .filter_map(|id| {
                let (s, kind, host) = self.slot_of(id).ok()?;
                Some(MetricSnapshot {
                    host,
                    name: self.bytes(s + M_NAME, self.get_u16(s + M_NAME_LEN) as usize).to_vec(),
                    kind,
                    value: self.atomic_i64(s + M_VALUE).load(Ordering::Relaxed),
                    sum: self.atomic_u64(s + M_SUM).load(Ordering::Relaxed),
                    count: self.atomic_u64(s + M_COUNT).load(Ordering::Relaxed),
                    buckets: (0..N_BUCKETS)
                        .map(|b| self.atomic_u64(s + M_BUCKETS + b * 8).load(Ordering::Relaxed))
                        .collect(),
                })
            })
            .collect()
    }
}

/// A root context of an instance waiting on a queue (kept in the instance's HostEnv); `seen`
/// is the queue's sequence number last announced to it.
pub(crate) struct QueueReg {
    pub root: u32,
    pub queue: u32,
    pub seen: u64,
}

static PROCESS_STORE: std::sync::Mutex<Option<std::sync::Arc<SharedStore>>> = std::sync::Mutex::new(None);

/// Sets the store that instances created from now on in this process use (the embedder's
/// shared-memory zone); None: they get none (the hostcalls answer UNIMPLEMENTED).
pub fn set_process_store(store: Option<std::sync::Arc<SharedStore>>) {
    *PROCESS_STORE.lock().unwrap_or_else(|e| e.into_inner()) = store;
}

pub fn process_store() -> Option<std::sync::Arc<SharedStore>> {
    PROCESS_STORE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// A metric name as Prometheus accepts it: `[a-zA-Z_:][a-zA-Z0-9_:]*`, every other byte
/// becoming `_`.
pub fn prometheus_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, &b) in name.iter().enumerate() {
        let ok = b.is_ascii_alphabetic() || b == b'_' || b == b':' || (i > 0 && b.is_ascii_digit());
        if i == 0 && b.is_ascii_digit() {
            out.push('_');
            out.push(b as char);
        } else {
            out.push(if ok { b as char } else { '_' });
        }
    }
    out
}

/// The host's per-filter and per-module figures (see the embedder's README, "Metrics"):
/// family, type, help. Their series are written first, each family with its HELP and TYPE.
pub const HOST_FAMILIES: &[(&str, MetricKind, &str)] = &[
    ("proxy_wasm_filter_callbacks_total", MetricKind::Counter, "Plugin callbacks run for the filter (exported callbacks of its root context and of its requests' contexts)."),
    ("proxy_wasm_filter_failures_total", MetricKind::Counter, "Callbacks of the filter that failed, by kind (trap, cpu_budget, memory, proc_exit, panic)."),
    ("proxy_wasm_filter_instructions_total", MetricKind::Counter, "Wasm instructions the filter's callbacks executed (0 when wasm_max_instructions is 0)."),
    ("proxy_wasm_filter_callback_duration_seconds", MetricKind::Histogram, "Wall time of the filter's callbacks."),
    ("proxy_wasm_module_restarts_total", MetricKind::Counter, "Instances of the module replaced after a failure."),
    ("proxy_wasm_module_memory_bytes", MetricKind::Gauge, "Linear memory of the module's instances, summed over workers."),
];

/// A Prometheus label value, escaped (`\\`, `\"`, `\n`).
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text exposition format (version 0.0.4) of `metrics`: the host's series
/// (HOST_FAMILIES), then the plugins'. A name that two plugin metrics sanitize to, or that
/// is a host family, is written once (the first), as Prometheus rejects duplicates.
pub fn prometheus_text(metrics: &[MetricSnapshot]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for (family, kind, help) in HOST_FAMILIES {
        let series = metrics.iter().filter(|m| {
            m.host && m.kind == *kind && m.name.starts_with(family.as_bytes()) && m.name.get(family.len()) == Some(&b'{')
        });
        for (i, m) in series.enumerate() {
            if i == 0 {
                seen.insert(family.to_string());
                let t = match kind {
                    MetricKind::Counter => "counter",
                    MetricKind::Gauge => "gauge",
                    MetricKind::Histogram => "histogram",
                };
                let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} {t}");
            }
            let name = String::from_utf8_lossy(&m.name);
            if *kind != MetricKind::Histogram {
                let _ = writeln!(out, "{name} {}", m.value);
                continue;
            }
            // Buckets in microseconds, the sum in nanoseconds: written in seconds.
            let labels = name[family.len() + 1..].trim_end_matches('}');
            let mut cum = 0;
            for (i, c) in m.buckets.iter().enumerate() {
                cum += c;
                let le = HISTOGRAM_BOUNDS.get(i).map_or("+Inf".to_string(), |ub| format!("{}", *ub as f64 / 1e6));
                let _ = writeln!(out, "{family}_bucket{{{labels},le=\"{le}\"}} {cum}");
            }
            let _ = writeln!(out, "{family}_sum{{{labels}}} {}\n{family}_count{{{labels}}} {}", m.sum as f64 / 1e9, m.count);
        }
    }
    for m in metrics.iter().filter(|m| !m.host) {
        let name = prometheus_name(&m.name);
        if !seen.insert(name.clone()) {
            let _ = writeln!(out, "# {name}: another metric has this name once sanitized; skipped");
            continue;
        }
        match m.kind {
            MetricKind::Counter => {
                let _ = writeln!(out, "# TYPE {name} counter\n{name} {}", m.value);
            }
            MetricKind::Gauge => {
                let _ = writeln!(out, "# TYPE {name} gauge\n{name} {}", m.value);
            }
            MetricKind::Histogram => {
                let _ = writeln!(out, "# TYPE {name} histogram");
                let mut cum = 0;
                for (i, c) in m.buckets.iter().enumerate() {
                    cum += c;
                    match HISTOGRAM_BOUNDS.get(i) {
                        Some(ub) => {
                            let _ = writeln!(out, "{name}_bucket{{le=\"{ub}\"}} {cum}");
                        }
                        None => {
                            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
                        }
                    }
                }
                let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", m.sum, m.count);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_semantics() {
        let s = SharedStore::new_private(MIN_SIZE);
        assert_eq!(s.get(b"k"), Err(Status::NotFound));
        s.set(b"k", b"v1", 0).unwrap();
        let (v, cas) = s.get(b"k").unwrap();
        assert_eq!(v, b"v1");
        assert_ne!(cas, 0);
        s.set(b"k", b"v2", cas).unwrap();
        assert_eq!(s.set(b"k", b"v3", cas), Err(Status::CasMismatch));
        let (v, cas2) = s.get(b"k").unwrap();
        assert_eq!((v.as_slice(), cas2 != cas), (&b"v2"[..], true));
        s.set(b"k", b"", 0).unwrap();
        assert_eq!(s.get(b"k").unwrap().0, b"");
        // A missing key is created whatever the cas (Envoy).
        s.set(b"new", b"x", 12345).unwrap();
        assert_eq!(s.set(&[0; MAX_KEY + 1], b"", 0), Err(Status::BadArgument));
        assert_eq!(s.set(b"big", &vec![0; MAX_VALUE + 1], 0), Err(Status::BadArgument));
        assert_eq!(s.get(&[0; MAX_KEY + 1]), Err(Status::NotFound));
    }

    #[test]
    fn counters_never_wrap_negative() {
        let s = SharedStore::new_private(MIN_SIZE);
        let c = s.define_metric(MetricKind::Counter, b"c").unwrap();
        assert_eq!(s.record_metric(c, i64::MAX as u64 + 1), Err(Status::BadArgument));
        assert_eq!(s.record_metric(c, u64::MAX), Err(Status::BadArgument));
        assert_eq!(s.get_metric(c), Ok(0));
        s.record_metric(c, i64::MAX as u64 - 1).unwrap();
        s.record_metric(c, 5).unwrap();
        s.increment_metric(c, 5).unwrap();
        assert_eq!(s.get_metric(c), Ok(i64::MAX as u64));
    }

    #[test]
    fn full_zone_evicts_least_recently_written() {
        let s = SharedStore::new_private(MIN_SIZE);
        let val = vec![7u8; 1000];
        for i in 0..2000 {
            s.set(format!("key{i}").as_bytes(), &val, 0).unwrap();
            // key0 is rewritten all along: it stays the most recently written.
            s.set(b"key0", format!("{i}").as_bytes(), 0).unwrap();
        }
        assert!(s.evictions() > 0);
        assert_eq!(s.get(b"key0").unwrap().0, b"1999");
        assert_eq!(s.get(b"key1999").unwrap().0, val);
        assert_eq!(s.get(b"key1"), Err(Status::NotFound));
    }

    #[test]
    fn new_keys_on_a_full_zone_do_not_compact_every_write() {
        let s = SharedStore::new_private(MIN_SIZE);
        let val = vec![7u8; 200];
        let mut i = 0;
        while s.evictions() == 0 {
            s.set(format!("key{i}").as_bytes(), &val, 0).unwrap();
            i += 1;
        }
        let before = s.get_u64(H_COMPACTIONS);
        for j in 0..1000 {
            s.set(format!("new{j}").as_bytes(), &val, 0).unwrap();
        }
        let compactions = s.get_u64(H_COMPACTIONS) - before;
        // heap/16 is ~80 such records: about one compaction per 80 writes, not one per write.
        assert!(compactions <= 1000 / 40, "{compactions} compactions for 1000 writes");
        assert_eq!(s.get(b"new999").unwrap().0, val);
    }

    #[test]
    fn index_hash_is_seeded_per_zone() {
        let a = SharedStore::new_private(MIN_SIZE);
        let b = SharedStore::new_private(MIN_SIZE);
        let seed = |s: &SharedStore| (s.get_u64(H_SEED), s.get_u64(H_SEED + 8));
        assert_ne!(seed(&a), seed(&b));
        assert_ne!(a.hash(b"some key"), b.hash(b"some key"));
        assert_eq!(a.hash(b"some key"), keyed_hash(seed(&a), b"some key"));
        // Keys still found after a rebuild (the tags are recomputed from the keys).
        for i in 0..100 {
            a.set(format!("k{i}").as_bytes(), b"v", 0).unwrap();
        }
        a.atomic_u32(H_FLAGS).fetch_or(F_RECOVER, Ordering::Relaxed);
        for i in 0..100 {
            assert_eq!(a.get(format!("k{i}").as_bytes()).unwrap().0, b"v");
        }
    }

    #[test]
    fn queues_cannot_starve_shared_data() {
        let s = SharedStore::new_private(MIN_SIZE);
        let q = s.register_queue(b"vm\0q").unwrap();
        let q2 = s.register_queue(b"vm\0q2").unwrap();
        // Queue items are never evicted: fill the zone with them (each queue up to its cap),
        // then with entries.
        while s.enqueue(q, &[0; 10_000]).is_ok() {}
        while s.enqueue(q2, &[0; 10_000]).is_ok() {}
        let (n1, n2) = (s.queue_len(q).unwrap(), s.queue_len(q2).unwrap());
        let mut i = 0;
        while s.evictions() == 0 {
            s.set(format!("k{i}").as_bytes(), &[0; 1000], 0).unwrap();
            i += 1;
        }
        // Queues hold at most half the heap: the largest entry still fits, by evicting.
        let big = vec![0; s.get_u64(H_HEAP_LEN) as usize / 2 - 64];
        assert!(s.set(b"big", &big, 0).unwrap() > 0);
        assert_eq!(s.get(b"big").unwrap().0, big);
        assert_eq!((s.queue_len(q), s.queue_len(q2)), (Some(n1), Some(n2)));
        assert_eq!(s.dequeue(q).unwrap(), [0; 10_000]);
    }

    #[test]
    fn queue_byte_caps_and_no_eviction_for_items() {
        let s = SharedStore::new_private(MIN_SIZE);
        let heap = s.get_u64(H_HEAP_LEN) as usize;
        let qs: Vec<u32> = (0..3).map(|i| s.register_queue(format!("vm\0q{i}").as_bytes()).unwrap()).collect();
        // One queue: at most a quarter of the heap.
        let mut n = 0;
        while s.enqueue(qs[0], &[1; 1000]).is_ok() {
            n += 1;
        }
        assert!(n * 1024 <= heap / 4 && (n + 1) * 1024 > heap / 4, "{n} items");
        assert_eq!(s.queue_len(qs[0]), Some(n as u64));
        // All queues: at most half.
        while s.enqueue(qs[1], &[1; 1000]).is_ok() {}
        assert_eq!(s.enqueue(qs[2], &[1; 1000]), Err(Status::InternalFailure));
        // Fill the rest with entries: an item then fails rather than evicting one.
        for i in 0..heap / 1024 {
            let _ = s.set(format!("k{i}").as_bytes(), &[2; 1000], 0);
        }
        s.dequeue(qs[0]).unwrap();
        s.dequeue(qs[1]).unwrap();
        let before = s.evictions();
        let mut live = 0;
        for i in 0..heap / 1024 {
            live += s.get(format!("k{i}").as_bytes()).is_ok() as usize;
        }
        while s.enqueue(qs[2], &[1; 1000]).is_ok() {}
        assert_eq!(s.evictions(), before);
        let mut still = 0;
        for i in 0..heap / 1024 {
            still += s.get(format!("k{i}").as_bytes()).is_ok() as usize;
        }
        assert_eq!(still, live);
        // Bytes are given back on dequeue.
        while s.dequeue(qs[0]).is_ok() {}
        s.enqueue(qs[2], &[1; 1000]).unwrap();
    }

    #[test]
    fn reattach_keeps_data_and_other_size_formats() {
        let mut mem = vec![0u64; MIN_SIZE / 8 + 1];
        let base = mem.as_mut_ptr() as *mut u8;
        // SAFETY: mem outlives both handles, which are used one after the other.
        let a = unsafe { SharedStore::attach(base, MIN_SIZE + 8) }.unwrap();
        a.set(b"k", b"kept", 0).unwrap();
        let q = a.register_queue(b"vm\0q").unwrap();
        a.enqueue(q, b"item").unwrap();
        let m = a.define_metric(MetricKind::Counter, b"c").unwrap();
        a.increment_metric(m, 5).unwrap();
        drop(a);
        // SAFETY: as above.
        let b = unsafe { SharedStore::attach(base, MIN_SIZE + 8) }.unwrap();
        assert_eq!(b.get(b"k").unwrap().0, b"kept");
        assert_eq!(b.resolve_queue(b"vm\0q"), Some(q));
        assert_eq!(b.dequeue(q).unwrap(), b"item");
        assert_eq!(b.define_metric(MetricKind::Counter, b"c"), Ok(m));
        assert_eq!(b.get_metric(m), Ok(5));
        drop(b);
        // SAFETY: as above; a smaller size is another zone.
        let c = unsafe { SharedStore::attach(base, MIN_SIZE) }.unwrap();
        assert_eq!(c.get(b"k"), Err(Status::NotFound));
    }

    #[test]
    fn dead_holder_is_recovered() {
        let s = SharedStore::new_private(MIN_SIZE);
        s.set(b"a", b"1", 0).unwrap();
        // A holder that no longer exists, and a half-written record after the log's end.
        s.atomic_u32(H_LOCK).store(u32::MAX - 1, Ordering::Relaxed);
        let end = s.get_u64(H_LOG_END) as usize;
        s.set_u64(H_LOG_END, (end + 8) as u64);
        s.set_u32(s.heap_off() + end, 3);
        assert_eq!(s.get(b"a").unwrap().0, b"1");
        s.set(b"b", b"2", 0).unwrap();
        assert_eq!(s.get(b"b").unwrap().0, b"2");
    }

    #[test]
    fn pid_liveness() {
        assert!(pid_alive(std::process::id()));
        // pid 1 exists (maybe not ours to signal: EPERM still means alive).
        assert!(pid_alive(1));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX - 1));
        // A child that has been reaped is gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn recover_rejects_a_corrupt_layout_and_short_records() {
        let s = SharedStore::new_private(MIN_SIZE);
        s.set(b"a", b"1", 0).unwrap();
        // A record header cut by the log's end: fewer than R_HDR bytes left.
        let end = s.get_u64(H_LOG_END) as usize;
        s.set_u64(H_LOG_END, (end + 16) as u64);
        s.set_u32(s.heap_off() + end, 24);
        s.atomic_u32(H_FLAGS).fetch_or(F_RECOVER, Ordering::Relaxed);
        assert_eq!(s.get(b"a").unwrap().0, b"1");
        assert_eq!(s.get_u64(H_LOG_END) as usize, end);
        assert_eq!(s.take_events(), vec![Event::Recovered]);
        // A heap offset pointing outside the region: the heap is dropped, the layout restored.
        s.set_u64(H_HEAP_OFF, (s.len + 4096) as u64);
        s.atomic_u32(H_FLAGS).fetch_or(F_RECOVER, Ordering::Relaxed);
        assert_eq!(s.get(b"a"), Err(Status::NotFound));
        assert_eq!(s.take_events(), vec![Event::HeapDropped]);
        s.set(b"b", b"2", 0).unwrap();
        assert_eq!(s.get(b"b").unwrap().0, b"2");
        assert_eq!(s.recoveries(), (2, 1));
    }

    #[test]
    fn panic_holding_the_lock_marks_for_recovery() {
        let s = SharedStore::new_private(MIN_SIZE);
        s.set(b"a", b"1", 0).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _g = s.lock();
            // Half an append: bytes after the log's end, then the panic.
            let end = s.get_u64(H_LOG_END) as usize;
            s.set_u32(s.heap_off() + end, 3);
            s.set_u64(H_LOG_END, (end + 8) as u64);
            panic!("in the middle");
        }));
        assert!(r.is_err());
        assert_ne!(s.atomic_u32(H_FLAGS).load(Ordering::Relaxed) & F_RECOVER, 0);
        assert_eq!(s.get(b"a").unwrap().0, b"1");
        assert_eq!(s.atomic_u32(H_FLAGS).load(Ordering::Relaxed), 0);
        assert_eq!(s.take_events(), vec![Event::Recovered]);
        s.set(b"b", b"2", 0).unwrap();
    }

    #[test]
    fn corrupt_queue_head_panics_then_recovers() {
        let s = SharedStore::new_private(MIN_SIZE);
        let q = s.register_queue(b"vm\0q").unwrap();
        s.enqueue(q, b"a").unwrap();
        s.enqueue(q, b"b").unwrap();
        // A head pointing at a zero word (past the log's records): no endless loop.
        let end = s.get_u64(H_LOG_END);
        s.set_u64(H_LOG_END, end + 64);
        s.set_u64(s.queue_slot(0) + Q_HEAD, end);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.dequeue(q))).is_err());
        // The panic marked the zone: the next call repairs (drops the zero tail, rebuilds heads).
        assert_eq!(s.dequeue(q).unwrap(), b"a");
        assert_eq!(s.dequeue(q).unwrap(), b"b");
        assert_eq!(s.take_events(), vec![Event::Recovered]);
    }

    #[test]
    fn death_mid_compaction_drops_the_heap_but_keeps_tables() {
        let s = SharedStore::new_private(MIN_SIZE);
        let m = s.define_metric(MetricKind::Counter, b"c").unwrap();
        s.increment_metric(m, 3).unwrap();
        let q = s.register_queue(b"vm\0q").unwrap();
        s.enqueue(q, b"item").unwrap();
        s.set(b"a", b"1", 0).unwrap();
        let seq = s.queue_seq(q).unwrap();
        // A holder that died with the compaction flag set.
        s.atomic_u32(H_FLAGS).fetch_or(F_COMPACTING, Ordering::Relaxed);
        s.atomic_u32(H_LOCK).store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(s.get(b"a"), Err(Status::NotFound));
        assert_eq!(s.take_events(), vec![Event::HeapDropped]);
        assert_eq!(s.queue_len(q), Some(0));
        assert_eq!(s.dequeue(q), Err(Status::Empty));
        assert!(s.queue_seq(q).unwrap() > seq);
        assert_eq!(s.resolve_queue(b"vm\0q"), Some(q));
        assert_eq!(s.get_metric(m), Ok(3));
        s.enqueue(q, b"again").unwrap();
        s.set(b"a", b"2", 0).unwrap();
        assert_eq!(s.dequeue(q).unwrap(), b"again");
        assert_eq!(s.get(b"a").unwrap().0, b"2");
    }

    #[test]
    fn one_vm_cannot_take_every_queue_slot() {
        let s = SharedStore::new_private(MIN_SIZE);
        for i in 0..MAX_QUEUES_PER_VM {
            s.register_queue(format!("greedy\0q{i}").as_bytes()).unwrap();
        }
        assert_eq!(s.register_queue(b"greedy\0one-more"), Err(Status::InternalFailure));
        // Its existing queues still resolve and re-register; another VM still gets slots.
        assert_eq!(s.register_queue(b"greedy\0q0"), Ok(1));
        assert!(s.register_queue(b"modest\0q").is_ok());
    }

    #[test]
    fn queues_fifo_empty_not_found_bounds() {
        // Big enough for MAX_QUEUE_ITEMS empty items within one queue's byte cap.
        let s = SharedStore::new_private(16 << 20);
        let q = s.register_queue(b"vm\0q").unwrap();
        assert_eq!(s.register_queue(b"vm\0q"), Ok(q));
        let q2 = s.register_queue(b"vm\0other").unwrap();
        assert_ne!(q, q2);
        assert_eq!(s.resolve_queue(b"vm\0none"), None);
        assert_eq!(s.dequeue(q), Err(Status::Empty));
        assert_eq!(s.dequeue(999), Err(Status::NotFound));
        assert_eq!(s.enqueue(999, b"x"), Err(Status::NotFound));
        let seq0 = s.queue_seq(q).unwrap();
        for i in 0..100 {
            s.enqueue(q, format!("a{i}").as_bytes()).unwrap();
            s.enqueue(q2, format!("b{i}").as_bytes()).unwrap();
            s.set(format!("k{i}").as_bytes(), &[1; 2000], 0).unwrap();
        }
        assert_eq!(s.queue_seq(q), Some(seq0 + 100));
        for i in 0..100 {
            assert_eq!(s.dequeue(q).unwrap(), format!("a{i}").as_bytes());
        }
        assert_eq!(s.dequeue(q), Err(Status::Empty));
        assert_eq!(s.queue_len(q2), Some(100));
        for _ in 0..MAX_QUEUE_ITEMS - 100 {
            s.enqueue(q2, b"").unwrap();
        }
        assert_eq!(s.enqueue(q2, b""), Err(Status::InternalFailure));
        assert_eq!(s.dequeue(q2).unwrap(), b"b0");
    }

    #[test]
    fn queue_items_survive_compaction_and_eviction() {
        let s = SharedStore::new_private(MIN_SIZE);
        let q = s.register_queue(b"vm\0q").unwrap();
        for i in 0..50 {
            s.enqueue(q, format!("item{i}").as_bytes()).unwrap();
        }
        for i in 0..3000 {
            s.set(format!("key{i}").as_bytes(), &[0; 500], 0).unwrap();
        }
        for i in 0..50 {
            assert_eq!(s.dequeue(q).unwrap(), format!("item{i}").as_bytes());
        }
    }

    #[test]
    fn host_metrics_are_out_of_plugins_reach() {
        let s = SharedStore::new_private(MIN_SIZE);
        let series = br#"proxy_wasm_filter_callbacks_total{module="m",filter="f"}"#;
        let h = s.define_host_metric(MetricKind::Counter, series).unwrap();
        // A plugin naming the same series gets its own metric; the host's id is NOT_FOUND to it.
        let p = s.define_metric(MetricKind::Counter, series).unwrap();
        assert_ne!(h, p);
        assert_eq!(s.increment_metric(h, 1), Err(Status::NotFound));
        assert_eq!(s.record_metric(h, 1), Err(Status::NotFound));
        assert_eq!(s.get_metric(h), Err(Status::NotFound));
        s.host_add(h, 3);
        s.host_add(h, -5); // a counter never goes down
        s.host_add(p, 100); // the host's calls do not reach plugin metrics either
        let d = s.define_host_metric(MetricKind::Histogram, br#"proxy_wasm_filter_callback_duration_seconds{module="m",filter="f"}"#).unwrap();
        let mut b = [0u64; N_BUCKETS];
        b[0] = 1;
        b[N_BUCKETS - 1] = 2;
        s.host_observe(d, &b, 1_500_000_000);
        let text = prometheus_text(&s.metrics());
        assert!(text.starts_with("# HELP proxy_wasm_filter_callbacks_total "), "{text}");
        assert!(text.contains("# TYPE proxy_wasm_filter_callbacks_total counter\nproxy_wasm_filter_callbacks_total{module=\"m\",filter=\"f\"} 3\n"), "{text}");
        assert!(text.contains("_bucket{module=\"m\",filter=\"f\",le=\"0.000001\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{module=\"m\",filter=\"f\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{module=\"m\",filter=\"f\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("_sum{module=\"m\",filter=\"f\"} 1.5\n"), "{text}");
        // The host's calls did not reach the plugin's metric.
        assert!(text.contains("\nproxy_wasm_filter_callbacks_total_module__m__filter__f__ 0\n"), "{text}");
        // A plugin metric named like a host family is skipped (Prometheus rejects a repeated family).
        s.define_metric(MetricKind::Gauge, b"proxy_wasm_module_memory_bytes").unwrap();
        s.define_host_metric(MetricKind::Gauge, br#"proxy_wasm_module_memory_bytes{module="m"}"#).unwrap();
        let text = prometheus_text(&s.metrics());
        assert_eq!(text.matches("# TYPE proxy_wasm_module_memory_bytes ").count(), 1, "{text}");
        assert!(text.contains("# proxy_wasm_module_memory_bytes: another metric has this name"), "{text}");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn metrics_and_prometheus() {
        let s = SharedStore::new_private(MIN_SIZE);
        let c = s.define_metric(MetricKind::Counter, b"requests.total").unwrap();
        let g = s.define_metric(MetricKind::Gauge, b"9active").unwrap();
        let h = s.define_metric(MetricKind::Histogram, b"latency_ms").unwrap();
        assert_eq!(s.define_metric(MetricKind::Counter, b"requests.total"), Ok(c));
        let other = s.define_metric(MetricKind::Gauge, b"requests.total").unwrap();
        assert_ne!(other, c);
        s.increment_metric(c, 2).unwrap();
        s.record_metric(c, 3).unwrap();
        assert_eq!(s.increment_metric(c, -1), Err(Status::BadArgument));
        s.record_metric(g, 10).unwrap();
        s.increment_metric(g, -15).unwrap();
        assert_eq!(s.get_metric(g), Ok(-5i64 as u64));
        assert_eq!(s.increment_metric(h, 1), Err(Status::BadArgument));
        assert_eq!(s.get_metric(h), Err(Status::BadArgument));
        assert_eq!(s.get_metric(99), Err(Status::NotFound));
        for v in [1, 3, 7, 2_000_000] {
            s.record_metric(h, v).unwrap();
        }
        let text = prometheus_text(&s.metrics());
        assert!(text.contains("# TYPE requests_total counter\nrequests_total 5\n"), "{text}");
        assert!(text.contains("# requests_total: another metric has this name once sanitized; skipped\n"), "{text}");
        assert!(text.contains("# TYPE _9active gauge\n_9active -5\n"), "{text}");
        assert!(text.contains("latency_ms_bucket{le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("latency_ms_bucket{le=\"5\"} 2\n"), "{text}");
        assert!(text.contains("latency_ms_bucket{le=\"10\"} 3\n"), "{text}");
        assert!(text.contains("latency_ms_bucket{le=\"1000000\"} 3\n"), "{text}");
        assert!(text.contains("latency_ms_bucket{le=\"+Inf\"} 4\nlatency_ms_sum 2000011\nlatency_ms_count 4\n"), "{text}");
    }

    #[test]
    fn concurrent_cas_increments_from_threads() {
        let s = std::sync::Arc::new(SharedStore::new_private(MIN_SIZE));
        s.set(b"n", b"0", 0).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (v, cas) = s.get(b"n").unwrap();
                            let n: u64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
                            if s.set(b"n", (n + 1).to_string().as_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.get(b"n").unwrap().0, b"2000");
    }
}
