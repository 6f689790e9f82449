//! The shared store against a model: arbitrary sequences of set (with no, current or stale
//! cas), get, queue register/enqueue/dequeue and metric operations on a heap-backed store.
//! The data stays well under the zone's size, so nothing is evicted and the store must agree
//! with the model exactly, through every compaction its dead records cause.
#![no_main]

use std::collections::{HashMap, VecDeque};

use libfuzzer_sys::fuzz_target;
use proxy_wasm_host::shared_store::{MetricKind, SharedStore, MIN_SIZE};
use proxy_wasm_host::Status;

fuzz_target!(|data: &[u8]| {
    let s = SharedStore::new_private(MIN_SIZE);
    let mut kv: HashMap<u8, (Vec<u8>, u32)> = HashMap::new();
    let mut queues: HashMap<u8, (u32, VecDeque<Vec<u8>>)> = HashMap::new();
    // Heap bytes of the waiting items (whole records), kept under one queue's byte cap (a
    // quarter of a MIN_SIZE zone's heap, ~76 KiB) even if all are in one queue.
    let mut items = 0usize;
    let rec = |len: usize| (24 + len + 7) & !7;
    let mut metrics: HashMap<u8, (u32, MetricKind, i64)> = HashMap::new();
    let mut it = data.chunks_exact(3);
    for c in &mut it {
        let (op, a, b) = (c[0], c[1], c[2]);
        let key = [b'k', a % 8];
        match op % 8 {
            0 => {
                let val = vec![b; (b % 64) as usize];
                let cas = match (op >> 3) % 3 {
                    0 => 0,
                    1 => kv.get(&(a % 8)).map_or(0, |e| e.1),
                    _ => kv.get(&(a % 8)).map_or(0, |e| e.1.wrapping_add(1).max(1)),
                };
                let r = s.set(&key, &val, cas);
                match kv.get(&(a % 8)) {
                    Some(e) if cas != 0 && cas != e.1 => assert_eq!(r, Err(Status::CasMismatch)),
                    _ => {
                        assert_eq!(r, Ok(0));
                        let (_, new_cas) = s.get(&key).expect("just set");
                        kv.insert(a % 8, (val, new_cas));
                    }
                }
            }
            1 => match kv.get(&(a % 8)) {
                Some(e) => assert_eq!(s.get(&key), Ok(e.clone())),
                None => assert_eq!(s.get(&key), Err(Status::NotFound)),
            },
            2 => {
                let id = s.register_queue(&[b'q', a % 4]).expect("register");
                let e = queues.entry(a % 4).or_insert((id, VecDeque::new()));
                assert_eq!(e.0, id);
            }
            3 => {
                if let Some((id, q)) = queues.get_mut(&(a % 4)) {
                    let item = vec![a; (b % 64) as usize];
                    if items + rec(item.len()) <= 70_000 {
                        assert_eq!(s.enqueue(*id, &item), Ok(0));
                        items += rec(item.len());
                        q.push_back(item);
                    }
                }
            }
            4 => {
                if let Some((id, q)) = queues.get_mut(&(a % 4)) {
                    match q.pop_front() {
                        Some(item) => {
                            items -= rec(item.len());
                            assert_eq!(s.dequeue(*id), Ok(item));
                        }
                        None => assert_eq!(s.dequeue(*id), Err(Status::Empty)),
                    }
                }
            }
            5 => {
                let kind = match b % 3 {
                    0 => MetricKind::Counter,
                    1 => MetricKind::Gauge,
                    _ => MetricKind::Histogram,
                };
                // A name is one metric per type (Envoy): the model keys by both.
                let slot = (a % 4) * 3 + b % 3;
                let r = s.define_metric(kind, &[b'm', a % 4]);
                match metrics.get(&slot) {
                    Some(m) => assert_eq!(r, Ok(m.0)),
                    None => {
                        metrics.insert(slot, (r.expect("define"), kind, 0));
                    }
                }
            }
            6 => {
                if let Some(m) = metrics.get_mut(&(a % 12)) {
                    let delta = i64::from(b as i8);
                    let r = s.increment_metric(m.0, delta);
                    match m.1 {
                        MetricKind::Counter if delta < 0 => assert_eq!(r, Err(Status::BadArgument)),
                        MetricKind::Histogram => assert_eq!(r, Err(Status::BadArgument)),
                        _ => {
                            assert_eq!(r, Ok(()));
                            m.2 += delta;
                        }
                    }
                }
            }
            _ => {
                if let Some(m) = metrics.get(&(a % 12)) {
                    match m.1 {
                        MetricKind::Histogram => assert_eq!(s.get_metric(m.0), Err(Status::BadArgument)),
                        _ => assert_eq!(s.get_metric(m.0), Ok(m.2 as u64)),
                    }
                }
            }
        }
    }
    assert_eq!(s.evictions(), 0);
});
