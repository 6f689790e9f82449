//! Request headers as nginx keeps them: besides the list, r->headers_in has shortcuts
//! (host, user_agent, cookies...) and derived values ($host, the connection type) that
//! nginx's parser files per header. After a plugin edits the list, they are filed again the
//! same way, through nginx's own table of request headers.

use std::ptr;

use ngx::ffi::*;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
use proxy_wasm_host::Status;

use super::pseudo::validate_host;
use super::stream::{eq_key, NgxStream};
use crate::util::list::{bytes, each_elt, pool_str};

/// Empties an ngx_array_t of element pointers (nginx < 1.23 keeps Cookie headers in one),
/// initialising it if nginx never did (ngx_array_init is inline, not exported).
#[cfg(not(ngx_linked_headers))]
unsafe fn reset_ptr_array(r: *mut ngx_http_request_t, a: *mut ngx_array_t) -> bool {
    let size = std::mem::size_of::<*mut ngx_table_elt_t>();
    if (*a).elts.is_null() || (*a).size != size {
        let elts = ngx_palloc((*r).pool, 2 * size);
        if elts.is_null() {
            return false;
        }
        (*a).elts = elts;
        (*a).nalloc = 2;
        (*a).size = size;
        (*a).pool = (*r).pool;
    }
    (*a).nelts = 0;
    true
}

/// nginx's table of the request headers it files in r->headers_in (ends with an empty name).
unsafe fn headers_in_table() -> impl Iterator<Item = &'static ngx_http_header_t> {
    // SAFETY: an array nginx exports, terminated by an entry with an empty name.
    let base = ptr::addr_of!(ngx_http_headers_in) as *const ngx_http_header_t;
    (0..).map(move |i| &*base.add(i)).take_while(|h| h.name.len != 0)
}

pub(super) unsafe fn slot(base: *mut u8, off: usize) -> *mut *mut ngx_table_elt_t {
    base.add(off) as *mut *mut ngx_table_elt_t
}

/// The handlers of ngx_http_headers_in that need telling apart: Host's and the unique
/// headers' refuse a duplicate by finalizing the request with 400, and (nginx < 1.23) the
/// one that files Cookie and X-Forwarded-For in arrays. Looked up once per process: the
/// table is nginx's, fixed for the life of the binary.
#[derive(Clone, Copy)]
struct InHandlers {
    host: usize,
    unique: usize,
    #[cfg_attr(ngx_linked_headers, allow(dead_code))]
    multi: usize,
}

impl InHandlers {
    fn get() -> InHandlers {
        static H: std::sync::OnceLock<(usize, usize, usize)> = std::sync::OnceLock::new();
        let &(host, unique, multi) = H.get_or_init(|| {
            // SAFETY: reads nginx's static table (see headers_in_table).
            let of = |name: &[u8]| unsafe {
                headers_in_table()
                    .find(|h| eq_key(bytes(&h.name), name))
                    .and_then(|h| h.handler)
                    .map_or(0, |f| f as usize)
            };
            (of(b"host"), of(b"content-length"), of(b"cookie"))
        });
        InHandlers { host, unique, multi }
    }

    fn same(a: ngx_http_header_handler_pt, b: usize) -> bool {
        b != 0 && a.map(|f| f as usize) == Some(b)
    }
}

/// Files one request header element in its headers_in shortcut the way nginx's parser
/// does: through nginx's own handler (which also derives the connection type and browser
/// flags), except Host and the unique headers, filed directly with the first occurrence
/// winning (their handlers would finalize the request with 400 on a duplicate).
///
/// # Safety
/// `e` is a live element of `r`'s headers_in.headers.
unsafe fn file_in_shortcut(r: *mut ngx_http_request_t, handlers: &InHandlers, e: *mut ngx_table_elt_t) {
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(&*r) else { return };
    let key_len = (*e).key.len;
    let hh = ngx_hash_find(&mut cmcf.headers_in_hash, ngx_hash_key((*e).lowcase_key, key_len), (*e).lowcase_key, key_len)
        as *mut ngx_http_header_t;
    if hh.is_null() {
        return;
    }
    if InHandlers::same((*hh).handler, handlers.host) || InHandlers::same((*hh).handler, handlers.unique) {
        let s = slot(&mut (*r).headers_in as *mut ngx_http_headers_in_t as *mut u8, (*hh).offset);
        if (*s).is_null() {
            *s = e;
        }
    } else if let Some(handler) = (*hh).handler {
        // The remaining handlers only file the element (chaining repeats where nginx
        // >= 1.23 chains them) and derive flags; they fail only when out of memory.
        handler(r, e, (*hh).offset);
    }
}

/// $host and virtual-host logic read headers_in.server, derived from Host.
///
/// # Safety
/// `r` is a live request.
unsafe fn derive_server(r: *mut ngx_http_request_t) {
    let host = (*r).headers_in.host;
    if !host.is_null() {
        // Edits were validated (host_edit_ok); a Host nginx itself accepted passes too.
        if let Some(s) = validate_host(bytes(&(*host).value)).and_then(|h| pool_str(r, &h)) {
            (*r).headers_in.server = s;
        }
    }
}

impl NgxStream<'_> {

    // ---- request headers ----

    /// Points every headers_in shortcut at the list again after an edit that moved or
    /// removed elements (replace, remove, set pairs), as nginx's parser files them: the
    /// headers come from nginx's own table (ngx_http_headers_in, as compiled into the running
    /// nginx: gzip's Accept-Encoding and Via, realip's X-Real-IP, dav's Destination, Depth,
    /// Overwrite and Date...), each run through its own handler (see `file_in_shortcut`).
    pub(super) unsafe fn refresh_in_shortcuts(&mut self) {
        let r = self.r;
        let hi = &mut (*r).headers_in as *mut ngx_http_headers_in_t;
        let handlers = InHandlers::get();
        for h in headers_in_table() {
            // nginx < 1.23 files Cookie (and X-Forwarded-For) in arrays of element pointers.
            #[cfg(not(ngx_linked_headers))]
            if InHandlers::same(h.handler, handlers.multi) {
                reset_ptr_array(r, (hi as *mut u8).add(h.offset) as *mut ngx_array_t);
                continue;
            }
            *slot(hi as *mut u8, h.offset) = ptr::null_mut();
        }
        // What the handlers derive: set again only by the headers present now.
        (*hi).set_connection_type(0);
        (*hi).set_msie(0);
        (*hi).set_msie6(0);
        (*hi).set_opera(0);
        (*hi).set_gecko(0);
        (*hi).set_chrome(0);
        (*hi).set_safari(0);
        (*hi).set_konqueror(0);
        each_elt(&mut (*hi).headers, &mut |e| {
            if (*e).hash != 0 && !(*e).lowcase_key.is_null() {
                #[cfg(ngx_linked_headers)]
                {
                    (*e).next = ptr::null_mut();
                }
                file_in_shortcut(r, &handlers, e);
            }
            false
        });
        derive_server(r);
    }

    /// Files one element just appended to headers_in.headers (an add moves no other
    /// element, so the other shortcuts stand): nginx's parser does the same per header.
    pub(super) unsafe fn file_added_in_shortcut(&mut self, e: *mut ngx_table_elt_t) {
        file_in_shortcut(self.r, &InHandlers::get(), e);
        if (*self.r).headers_in.host == e {
            derive_server(self.r);
        }
    }

    /// Rebuilds headers_in.headers without the elements `drop` selects. nginx lists cannot
    /// delete, and a zeroed hash is not enough: proxy_pass and $http_* still see the header.
    pub(super) unsafe fn rebuild_in(&mut self, drop: &dyn Fn(&[u8]) -> bool) -> Status {
        let r = self.r;
        let mut kept: Vec<ngx_table_elt_t> = Vec::new();
        each_elt(&mut (*r).headers_in.headers, &mut |e| {
            if (*e).hash != 0 && !drop(bytes(&(*e).key)) {
                kept.push(ptr::read(e));
            }
            false
        });
        let mut list: ngx_list_t = std::mem::zeroed();
        if ngx_list_init(&mut list, (*r).pool, kept.len().max(8), std::mem::size_of::<ngx_table_elt_t>()) != NGX_OK as ngx_int_t {
            return Status::InternalFailure;
        }
        (*r).headers_in.headers = list;
        // The list head moved: fix its `last` pointer before pushing into it.
        (*r).headers_in.headers.last = &mut (*r).headers_in.headers.part;
        for e in kept {
            let slot = ngx_list_push(&mut (*r).headers_in.headers) as *mut ngx_table_elt_t;
            if slot.is_null() {
                return Status::InternalFailure;
            }
            ptr::write(slot, e);
        }
        Status::Ok
    }
}
