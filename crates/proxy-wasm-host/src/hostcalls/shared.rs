//! Shared data, shared queues and metrics: the hostcalls over the instance's `SharedStore`
//! (see shared_store.rs). Shared-data keys and queue names are namespaced by the vm_id (the
//! module's name), as in Envoy; metrics are one namespace for every module.
//!
//! Queue ids are small numbers shared by every module, so an id is only honoured by an
//! instance that registered the queue or resolved it by name: its own VM's queues it may
//! dequeue from and enqueue to; another VM's queue, found with resolve_shared_queue(vm_id,
//! name) (Envoy's explicit cross-VM path), it may only enqueue to. Anything else is NOT_FOUND.

use wasmer::FunctionEnvMut;

use crate::abi::Status;
use crate::env::HostEnv;
use crate::hostcalls::status;
use crate::memory::{read, return_bytes, write_u32, write_u64};
use crate::shared_store::{MetricKind, QueueReg, SharedStore, MAX_KEY, MAX_METRIC_NAME, MAX_QUEUE_NAME, MAX_VALUE};

/// The store, or UNIMPLEMENTED with a warning naming the call when the embedder gave none.
fn store(env: &mut FunctionEnvMut<HostEnv>, call: &str) -> Result<std::sync::Arc<SharedStore>, Status> {
    match env.data().shared.clone() {
        Some(s) => {
            // Repairs done under earlier calls in this process (the store has no logger).
            for e in s.take_events() {
                env.data_mut().log(crate::abi::LogLevel::Error, e.to_string().as_bytes());
            }
            Ok(s)
        }
        None => {
            let msg = format!("env.{call} is not available: this host has no shared memory store: returned UNIMPLEMENTED");
            env.data_mut().log(crate::abi::LogLevel::Warn, msg.as_bytes());
            Err(Status::Unimplemented)
        }
    }
}

/// `vm_id NUL name`: the key of a shared-data entry or a queue.
fn namespaced(vm_id: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(vm_id.len() + 1 + name.len());
    k.extend_from_slice(vm_id);
    k.push(0);
    k.extend_from_slice(name);
    k
}

fn own_key(env: &FunctionEnvMut<HostEnv>, name: &[u8]) -> Vec<u8> {
    namespaced(env.data().name.as_bytes(), name)
}

/// A full zone is worth knowing about: eviction is silent to the plugin.
fn warn_evicted(env: &mut FunctionEnvMut<HostEnv>, evicted: u64) {
    if evicted > 0 {
        let msg = format!("shared memory zone full: evicted {evicted} least recently written shared data entries (raise wasm_shm_size)");
        env.data_mut().log(crate::abi::LogLevel::Warn, msg.as_bytes());
    }
}

/// `Err(status)` when a guest length is past `max` (or negative), checked before copying
/// anything out of guest memory: a plugin must not make the host allocate and copy up to
/// 4 GiB for a call that the store would refuse anyway.
fn check_len(len: i32, max: usize, status: Status) -> Result<(), Status> {
    if len < 0 || len as usize > max {
        return Err(status);
    }
    Ok(())
}

fn code(r: Result<i32, Status>) -> i32 {
    r.unwrap_or_else(|s| s as i32)
}

pub(crate) fn proxy_get_shared_data(
    mut env: FunctionEnvMut<HostEnv>,
    key: i32,
    key_len: i32,
    ret_data: i32,
    ret_size: i32,
    ret_cas: i32,
) -> i32 {
    code((|| {
        let s = store(&mut env, "proxy_get_shared_data")?;
        // No key that long can exist: NOT_FOUND (the Rust SDK panics on BAD_ARGUMENT here).
        check_len(key_len, MAX_KEY, Status::NotFound)?;
        let key = own_key(&env, &read(&env, key, key_len)?);
        let (value, cas) = s.get(&key)?;
        write_u32(&env, ret_cas, cas)?;
        Ok(return_bytes(&mut env, &value, ret_data, ret_size) as i32)
    })())
}

pub(crate) fn proxy_set_shared_data(mut env: FunctionEnvMut<HostEnv>, key: i32, key_len: i32, value: i32, value_len: i32, cas: i32) -> i32 {
    status((|| {
        let s = store(&mut env, "proxy_set_shared_data")?;
        check_len(key_len, MAX_KEY, Status::BadArgument)?;
        check_len(value_len, MAX_VALUE, Status::BadArgument)?;
        let key = own_key(&env, &read(&env, key, key_len)?);
        let value = read(&env, value, value_len)?;
        let evicted = s.set(&key, &value, cas as u32)?;
        warn_evicted(&mut env, evicted);
        Ok(())
    })())
}

/// Registers (or opens) queue `name` of this VM; its root context gets on_queue_ready.
pub(crate) fn proxy_register_shared_queue(mut env: FunctionEnvMut<HostEnv>, name: i32, name_len: i32, ret_id: i32) -> i32 {
    status((|| {
        let s = store(&mut env, "proxy_register_shared_queue")?;
        check_len(name_len, MAX_QUEUE_NAME, Status::BadArgument)?;
        let key = own_key(&env, &read(&env, name, name_len)?);
        let data = env.data();
        let root = *data.contexts.get(&data.call.effective_id).ok_or(Status::BadArgument)?;
        let id = s.register_queue(&key)?;
        write_u32(&env, ret_id, id)?;
        let data = env.data_mut();
        data.queue_grants.insert(id, true);
        if !data.queue_regs.iter().any(|r| r.root == root && r.queue == id) {
            // Items already waiting are announced at the next poll. The sequence number is read
            // before the length: an enqueue between the two then shows in the length (announced
            // now) or bumps the number past `seen` (announced at the next poll). Read the
            // other way round, an enqueue in between would be missed by both.
            let seq = s.queue_seq(id).unwrap_or(0);
            let seen = match s.queue_len(id) {
                Some(n) if n > 0 => u64::MAX,
                _ => seq,
            };
            data.queue_regs.push(QueueReg { root, queue: id, seen });
        }
        Ok(())
    })())
}

/// An empty vm_id means this VM.
pub(crate) fn proxy_resolve_shared_queue(
    mut env: FunctionEnvMut<HostEnv>,
    vm_id: i32,
    vm_id_len: i32,
    name: i32,
    name_len: i32,
    ret_id: i32,
) -> i32 {
    status((|| {
        let s = store(&mut env, "proxy_resolve_shared_queue")?;
        check_len(vm_id_len, MAX_QUEUE_NAME, Status::NotFound)?;
        check_len(name_len, MAX_QUEUE_NAME, Status::NotFound)?;
        let mut vm = read(&env, vm_id, vm_id_len)?;
        if vm.is_empty() {
            vm = env.data().name.as_bytes().to_vec();
        }
        let key = namespaced(&vm, &read(&env, name, name_len)?);
        let id = s.resolve_queue(&key).ok_or(Status::NotFound)?;
        write_u32(&env, ret_id, id)?;
        let own = vm == env.data().name.as_bytes();
        let grant = env.data_mut().queue_grants.entry(id).or_insert(own);
        *grant |= own;
        Ok(())
    })())
}

pub(crate) fn proxy_enqueue_shared_queue(mut env: FunctionEnvMut<HostEnv>, id: i32, value: i32, value_len: i32) -> i32 {
    status((|| {
        let s = store(&mut env, "proxy_enqueue_shared_queue")?;
        if !env.data().queue_grants.contains_key(&(id as u32)) {
            return Err(Status::NotFound);
        }
        check_len(value_len, MAX_VALUE, Status::BadArgument)?;
        let value = read(&env, value, value_len)?;
        let evicted = s.enqueue(id as u32, &value)?;
        warn_evicted(&mut env, evicted);
        Ok(())
    })())
}

pub(crate) fn proxy_dequeue_shared_queue(mut env: FunctionEnvMut<HostEnv>, id: i32, ret_data: i32, ret_size: i32) -> i32 {
    code((|| {
        let s = store(&mut env, "proxy_dequeue_shared_queue")?;
        if env.data().queue_grants.get(&(id as u32)) != Some(&true) {
            return Err(Status::NotFound);
        }
        let item = s.dequeue(id as u32)?;
        Ok(return_bytes(&mut env, &item, ret_data, ret_size) as i32)
    })())
}

pub(crate) fn proxy_define_metric(mut env: FunctionEnvMut<HostEnv>, kind: i32, name: i32, name_len: i32, ret_id: i32) -> i32 {
    status((|| {
        let s = store(&mut env, "proxy_define_metric")?;
        let kind = MetricKind::from_i32(kind).ok_or(Status::BadArgument)?;
        check_len(name_len, MAX_METRIC_NAME, Status::BadArgument)?;
        let id = s.define_metric(kind, &read(&env, name, name_len)?)?;
        write_u32(&env, ret_id, id)
    })())
}

pub(crate) fn proxy_increment_metric(mut env: FunctionEnvMut<HostEnv>, id: i32, delta: i64) -> i32 {
    status(store(&mut env, "proxy_increment_metric").and_then(|s| s.increment_metric(id as u32, delta)))
}

pub(crate) fn proxy_record_metric(mut env: FunctionEnvMut<HostEnv>, id: i32, value: i64) -> i32 {
    status(store(&mut env, "proxy_record_metric").and_then(|s| s.record_metric(id as u32, value as u64)))
}

pub(crate) fn proxy_get_metric(mut env: FunctionEnvMut<HostEnv>, id: i32, ret_value: i32) -> i32 {
    status((|| {
        let v = store(&mut env, "proxy_get_metric")?.get_metric(id as u32)?;
        write_u64(&env, ret_value, v)
    })())
}
