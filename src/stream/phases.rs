//! The session's hooks: on_new_connection right before the server's content handler
//! (proxy_pass, return...) runs, so after every phase before it: a `listen ... ssl` handshake
//! and ssl_preread's ClientHello are done, and no upstream is chosen yet. A preread phase
//! handler would not do: ssl_preread ends that phase once it has read the ClientHello. Then
//! the end of the session in the log phase.

use ngx::ffi::*;

use super::chain::{self, ChainResult};
use super::session;

/// Wraps the content handler of every server with filters (postconfiguration): the server's
/// own handler is kept in its configuration.
///
/// # Safety
/// `cf` is the stream block's configuration (postconfiguration's argument).
pub(crate) unsafe fn wrap_content_handlers(cf: *mut ngx_conf_t) {
    let ctx = (*cf).ctx as *mut ngx_stream_conf_ctx_t;
    let cmcf = *(*ctx).main_conf.add(ngx_stream_core_module.ctx_index) as *mut ngx_stream_core_main_conf_t;
    let servers = (*cmcf).servers.elts as *mut *mut ngx_stream_core_srv_conf_t;
    for i in 0..(*cmcf).servers.nelts {
        let cscf = *servers.add(i);
        let scf = *(*(*cscf).ctx).srv_conf.add((*crate::conf::module_ptr()).ctx_index) as *mut crate::conf::LocConf;
        if scf.is_null() || (*scf).filters.as_ref().is_none_or(|f| f.is_empty()) || (*cscf).handler.is_none() {
            continue;
        }
        (*scf).content = (*cscf).handler;
        (*cscf).handler = Some(content_handler);
    }
}

/// Creates the session's contexts and runs on_new_connection, then the server's own
/// content handler, unless a filter closed or failed the connection.
unsafe extern "C" fn content_handler(s: *mut ngx_stream_session_t) {
    let go_on = crate::util::guard("stream content handler", Err(NGX_STREAM_INTERNAL_SERVER_ERROR), || {
        // The content phase runs once per session: here its contexts are created.
        let Some(ctx) = session::get_or_create(s) else { return Ok(()) };
        match chain::run_new_connection(s, ctx) {
            ChainResult::Continue | ChainResult::Paused => Ok(()),
            ChainResult::Closed => {
                ctx.stopped = true;
                Err(NGX_STREAM_OK)
            }
            ChainResult::Failed => {
                ctx.stopped = true;
                Err(ctx.failure_status)
            }
        }
    });
    match go_on {
        Ok(()) => match session::srv_conf(s).and_then(|c| c.content) {
            Some(h) => h(s),
            None => ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR as ngx_uint_t),
        },
        // The session ends with this status ($status).
        Err(status) => ngx_stream_finalize_session(s, status as ngx_uint_t),
    }
}

/// Log phase: the close callbacks, on_done, on_log and on_delete.
pub(crate) unsafe extern "C" fn log_handler(s: *mut ngx_stream_session_t) -> ngx_int_t {
    crate::util::guard("stream log handler", NGX_OK as ngx_int_t, || {
        if let Some(ctx) = session::get(s) {
            chain::finish(s, ctx);
        }
        NGX_OK as ngx_int_t
    })
}
