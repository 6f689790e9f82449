//! nginx lists of header elements, and strings in a request's pool.
//!
//! Safety, for every function here: `r` is a live request, `list` a live, initialised list
//! of ngx_table_elt_t (or, for `init`, memory for one), `s` points at `len` readable bytes.

use std::ptr;

use ngx::ffi::*;

/// The bytes of an nginx string (empty for a null one).
pub(crate) unsafe fn bytes<'b>(s: &ngx_str_t) -> &'b [u8] {
    if s.len == 0 || s.data.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(s.data, s.len)
    }
}

/// Calls `f` on every element of an ngx_list_t of ngx_table_elt_t, stopping when it says so.
pub(crate) unsafe fn each_elt(list: *mut ngx_list_t, f: &mut dyn FnMut(*mut ngx_table_elt_t) -> bool) {
    let mut part: *mut ngx_list_part_t = &mut (*list).part;
    while !part.is_null() {
        let elts = (*part).elts as *mut ngx_table_elt_t;
        for i in 0..(*part).nelts {
            if f(elts.add(i)) {
                return;
            }
        }
        part = (*part).next;
    }
}

/// Copies `data` into the request pool (NUL-terminated, as nginx strings usually are).
pub(crate) unsafe fn pool_str(r: *mut ngx_http_request_t, data: &[u8]) -> Option<ngx_str_t> {
    let p = ngx_pnalloc((*r).pool, data.len() + 1) as *mut u8;
    if p.is_null() {
        return None;
    }
    ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
    *p.add(data.len()) = 0;
    Some(ngx_str_t { len: data.len(), data: p })
}

/// A lowercased copy of `data` in the request pool (NUL-terminated), for lowcase_key.
pub(crate) unsafe fn pool_lower(r: *mut ngx_http_request_t, data: &[u8]) -> Option<*mut u8> {
    let p = ngx_pnalloc((*r).pool, data.len() + 1) as *mut u8;
    if p.is_null() {
        return None;
    }
    for (i, b) in data.iter().enumerate() {
        *p.add(i) = b.to_ascii_lowercase();
    }
    *p.add(data.len()) = 0;
    Some(p)
}

/// Appends a header element to `list` (for the HTTP-call subrequests' headers too).
pub(crate) unsafe fn push_header(r: *mut ngx_http_request_t, list: *mut ngx_list_t, key: &[u8], value: &[u8]) -> Option<*mut ngx_table_elt_t> {
    let key_s = pool_str(r, key)?;
    let value_s = pool_str(r, value)?;
    let lc = pool_lower(r, key)?;
    let e = ngx_list_push(list) as *mut ngx_table_elt_t;
    if e.is_null() {
        return None;
    }
    (*e).key = key_s;
    (*e).value = value_s;
    (*e).lowcase_key = lc;
    (*e).hash = ngx_hash_key(lc, key.len());
    #[cfg(ngx_linked_headers)]
    {
        (*e).next = ptr::null_mut();
    }
    Some(e)
}

/// ngx_list_init (a static inline function in C, so not in the bindings).
pub(crate) unsafe fn init(list: *mut ngx_list_t, pool: *mut ngx_pool_t, n: usize, size: usize) -> Option<()> {
    let elts = ngx_palloc(pool, n * size);
    if elts.is_null() {
        return None;
    }
    (*list).part.elts = elts;
    (*list).part.nelts = 0;
    (*list).part.next = ptr::null_mut();
    (*list).last = &mut (*list).part;
    (*list).size = size;
    (*list).nalloc = n;
    (*list).pool = pool;
    Some(())
}
