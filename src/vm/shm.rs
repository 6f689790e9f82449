//! The shared-memory zone behind shared data, queues and metrics (`wasm_shm_size`). nginx
//! maps the zone before forking, so every worker sees the same bytes; the host core's
//! `SharedStore` lays its structures out inside. A reload with the same size reuses the zone
//! (nginx hands it to the new cycle), and the store keeps its contents.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use ngx::ffi::*;
use proxy_wasm_host::shared_store::{self, SharedStore};

use crate::conf::MainConf;


/// Declares the zone (postconfiguration, when any module is declared). Cheap: nginx creates
/// it later, once per cycle, in the master.
///
/// # Safety
/// `cf` is the configuration being loaded (postconfiguration's argument).
pub(crate) unsafe fn add_zone(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), String> {
    // Each module has its own zone (they are separate .so files with separate stores): the
    // stream module's may not take the http module's name.
    let mut name = if cfg!(feature = "stream") { ngx::ngx_string!("proxy_wasm_stream") } else { ngx::ngx_string!("proxy_wasm") };
    // The store gets the whole configured size, after nginx's slab header (see region()).
    let size = mcf.shm_size.unwrap_or(crate::conf::DEFAULT_SHM_SIZE) + header_size();
    let tag = crate::conf::module_ptr() as *mut c_void;
    let zone = ngx_shared_memory_add(cf, &mut name, size, tag);
    let Some(z) = NonNull::new(zone) else { return Err("cannot add the \"proxy_wasm\" shared memory zone".into()) };
    (*zone).init = Some(init_zone);
    mcf.shm_zone = Some(z);
    Ok(())
}

fn header_size() -> usize {
    (std::mem::size_of::<ngx_slab_pool_t>() + 63) & !63
}

/// Where the store goes in the zone: after nginx's slab pool header, which nginx itself may
/// still touch (its master force-unlocks every zone's slab mutex when a worker dies).
///
/// # Safety
/// `zone` is our zone, mapped (shm.addr set by nginx); its size includes header_size().
unsafe fn region(zone: *mut ngx_shm_zone_t) -> (*mut u8, usize) {
    let skip = header_size();
    let shm = &(*zone).shm;
    (shm.addr.add(skip), shm.size.saturating_sub(skip))
}

/// Zone init, in the master: formats the store, or keeps it when the zone is reused (reload
/// with the same size) or already holds one.
unsafe extern "C" fn init_zone(zone: *mut ngx_shm_zone_t, _old: *mut c_void) -> ngx_int_t {
    crate::util::guard("wasm shm init", NGX_ERROR as ngx_int_t, || {
        // SAFETY: nginx calls this with our zone once it is mapped, page-aligned, for the whole
        // cycle; nothing but SharedStore handles uses the part after the slab header.
        let (addr, len) = region(zone);
        match SharedStore::attach(addr, len) {
            Ok(_) => {
                (*zone).data = addr as *mut c_void;
                NGX_OK as ngx_int_t
            }
            Err(e) => {
                crate::util::log::cycle_error(&format!("wasm_shm_size: {e}"));
                NGX_ERROR as ngx_int_t
            }
        }
    })
}

/// In a worker: instances created from now on use the zone.
///
/// # Safety
/// Called in init_process: the cycle's zones are mapped (`shm_zone` is this cycle's).
pub(crate) unsafe fn install_worker_store(mcf: &MainConf) {
    let store = mcf.shm_zone.and_then(|z| {
        let zone = z.as_ptr();
        if (*zone).shm.addr.is_null() {
            return None;
        }
        let (addr, len) = region(zone);
        // SAFETY: the zone is mapped in every worker for the cycle's lifetime and only
        // SharedStore handles use this part of it.
        match SharedStore::attach(addr, len) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                crate::util::log::cycle_error(&format!("[proxy_wasm] shared memory unusable: {e}"));
                None
            }
        }
    });
    shared_store::set_process_store(store);
}

/// For the load-time check in the master (before the zone exists): a private store, so that
/// plugins defining metrics or queues in on_configure pass `nginx -t`. Of the configured
/// size, so that what fits in the zone (a large shared-data value written at configure
/// time, say) also fits in the check.
pub(crate) fn install_check_store(mcf: &MainConf) {
    let size = mcf.shm_size.unwrap_or(crate::conf::DEFAULT_SHM_SIZE);
    shared_store::set_process_store(Some(Arc::new(SharedStore::new_private(size))));
}

/// The stream module's store, when this nginx has one (the http module's metrics endpoint
/// serves its metrics too): the zone `proxy_wasm_stream` of the running cycle, read as it is
/// (never formatted here).
///
/// # Safety
/// In a worker (or the single process): the cycle's zones are mapped.
#[cfg(feature = "http")]
pub(crate) unsafe fn stream_module_store() -> Option<SharedStore> {
    let mut found = None;
    let mut part: *mut ngx_list_part_t = &mut (*ngx_cycle).shared_memory.part;
    while !part.is_null() && found.is_none() {
        let zones = (*part).elts as *mut ngx_shm_zone_t;
        for i in 0..(*part).nelts {
            let z = zones.add(i);
            if (*z).shm.name.as_bytes() == b"proxy_wasm_stream" && !(*z).shm.addr.is_null() {
                found = Some(z);
                break;
            }
        }
        part = (*part).next;
    }
    let (addr, len) = region(found?);
    // SAFETY: the stream module's zone, mapped for the cycle; its store's layout is this
    // build's (the same host core), and only SharedStore handles use it.
    SharedStore::open_existing(addr, len).ok()
}
