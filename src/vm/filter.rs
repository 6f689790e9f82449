//! One filter of a chain, the same for a request (http) and a session (stream): its context
//! created in its module's instance, the verdict on one of its callbacks with the failure
//! policy applied, and its deletion. Each subsystem's chain runner adds what is its own
//! around these (HTTP calls and local responses; held data per direction).

use std::rc::Rc;

use proxy_wasm_host::instance::Exports;
use proxy_wasm_host::{Action, HostError, Outcome, PluginInstance, StreamOps};

use super::worker::{Worker, WORKER};

/// A new context of a filter: the instance generation it lives in, its id (None when the
/// module could not start or the creation failed), and the callbacks the module exports.
pub(crate) struct NewContext {
    pub generation: u64,
    pub ctx_id: Option<u32>,
    pub exports: Exports,
}

/// Creates the context of filter definition `fi` under its root context, replacing a failed
/// instance first (as its back-off allows). A failure poisons the instance; `on_error` gets
/// the module's label and the error to log.
pub(crate) fn create_context(w: &mut Worker, fi: usize, on_error: &mut dyn FnMut(&str, &HostError)) -> NewContext {
    let mi = w.filter_module[fi];
    w.ensure_fresh(mi);
    let generation = w.slots[mi].generation();
    let mut c = NewContext { generation, ctx_id: None, exports: Exports::default() };
    let root = w.roots[fi];
    let slot = &mut w.slots[mi];
    if let (Some(root), Some(inst)) = (root, slot.get(generation)) {
        c.exports = inst.exports();
        match inst.create_http_context(root) {
            Ok(id) => c.ctx_id = Some(id),
            Err(e) => {
                on_error(&slot.label, &e);
                slot.poison();
            }
        }
    }
    c
}

/// The module of filter definition `fi`, its label, and the context id and instance a
/// callback of the filter's context runs on: None when the filter failed earlier or could not
/// start (its context is gone, or belongs to an instance since replaced).
pub(crate) fn running(w: &mut Worker, fi: usize, generation: u64, ctx_id: Option<u32>) -> (usize, Rc<str>, Option<(u32, &mut PluginInstance)>) {
    let mi = w.filter_module[fi];
    let slot = &mut w.slots[mi];
    let label = slot.label.clone();
    let inst = ctx_id.and_then(|id| slot.get(generation).map(|inst| (id, inst)));
    (mi, label, inst)
}

/// on_delete for each live context `(filter definition, generation, id)`, taking the ids;
/// no request or session needed (runs from pool cleanups too).
pub(crate) fn delete_contexts<'a>(contexts: impl Iterator<Item = (usize, u64, &'a mut Option<u32>)>) {
    let _ = WORKER.try_with(|w| {
        let Ok(mut w) = w.try_borrow_mut() else { return };
        let Some(w) = w.as_mut() else { return };
        for (fi, generation, ctx_id) in contexts {
            let slot = &mut w.slots[w.filter_module[fi]];
            if let (Some(id), Some(inst)) = (ctx_id.take(), slot.get(generation)) {
                if let Err(e) = inst.on_delete(id) {
                    crate::util::log::cycle_error(&format!("[proxy_wasm] {}: {e}", slot.label));
                    slot.poison();
                }
            }
        }
    });
}

/// What the chain does after one callback of a filter.
pub(crate) enum Verdict {
    /// The next filter runs: the callback continued (or undid its own Pause), the module
    /// lacks it, or the filter failed or is not running under fail-open.
    Continue,
    Paused,
    /// proxy_close_stream.
    Closed,
    /// The filter failed, or is not running, under fail-closed (logged).
    Failed,
    /// The callback answered (an HTTP local response): the outcome is the subsystem's.
    Answered(Outcome),
}

/// How the failure policy's messages end: "failing the request", "closing the connection".
pub(crate) struct Policy<'a> {
    pub fail_open: bool,
    pub consequence: &'a str,
}

/// The verdict on a filter that is not running (it failed earlier, or could not start).
pub(crate) fn not_running(p: &Policy<'_>, log: &mut dyn FnMut(u32, &str)) -> Verdict {
    if p.fail_open {
        return Verdict::Continue;
    }
    log(ngx::ffi::NGX_LOG_ERR, &format!("filter is not running (it failed or could not start); {}", p.consequence));
    Verdict::Failed
}

/// The verdict on one callback's result (None: the module does not export it). A failure
/// poisons module `mi`'s instance and the caller drops the filter's context; `own_continue`
/// says whether the callback resumed its own stream (undoing its Pause).
pub(crate) fn judge(
    w: &mut Worker,
    mi: usize,
    res: Option<Result<Outcome, HostError>>,
    p: &Policy<'_>,
    own_continue: impl Fn(&StreamOps) -> bool,
    log: &mut dyn FnMut(u32, &str),
) -> Verdict {
    match res {
        None => Verdict::Continue,
        Some(Ok(o)) if o.local_response.is_some() => Verdict::Answered(o),
        Some(Ok(o)) if o.ops.closes() => {
            log(ngx::ffi::NGX_LOG_INFO, "closed the stream (proxy_close_stream)");
            Verdict::Closed
        }
        Some(Ok(o)) if o.action == Action::Continue || own_continue(&o.ops) => Verdict::Continue,
        Some(Ok(_)) => Verdict::Paused,
        Some(Err(e)) => {
            w.slots[mi].poison();
            if p.fail_open {
                log(ngx::ffi::NGX_LOG_ERR, &format!("{e}; failing open (proxy_wasm_failure_policy open): the filter is skipped"));
                return Verdict::Continue;
            }
            log(ngx::ffi::NGX_LOG_ERR, &format!("{e}; {}", p.consequence));
            Verdict::Failed
        }
    }
}
