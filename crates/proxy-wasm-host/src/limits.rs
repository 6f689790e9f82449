//! Resource limits a host puts on plugins: a linear-memory cap and a table cap (wasmer
//! tunables), a CPU budget per callback (wasmer's metering middleware counts executed
//! operators), and the bound of every host-side buffer a plugin can make the host fill.
//!
//! Rust aborts the process when an allocation fails, and `catch_unwind` cannot catch that:
//! every allocation whose size a plugin chooses is bounded by one of the constants below.
//! What one instance can make its process hold is therefore finite:
//! - linear memory: `Limits::max_memory` (wasm_max_memory, default 1 GiB), one memory only;
//! - tables: MAX_TABLES * MAX_TABLE_ELEMENTS * 8 bytes = 32 MiB;
//! - root-context properties: MAX_ROOT_PROPERTY_BYTES = 1 MiB (+ MAX_ROOT_PROPERTIES entries);
//! - per live HTTP context, until its request ends: header edits 4 maps * MAX_HEADER_EDIT_BYTES
//!   + property sets MAX_PROPERTY_SET_BYTES = 5 MiB, and two bodies of MAX_BODY_BUFFER
//!   (128 MiB); how many contexts live at once is nginx's (worker_connections), not the plugin's;
//! - per hostcall, freed when it returns: a copy of guest memory it names (at most the memory
//!   cap), a log line of MAX_LOG_MESSAGE, MAX_RANDOM random bytes, a local response of
//!   MAX_LOCAL_RESPONSE_BODY + MAX_SERIALIZED_SIZE + MAX_LOCAL_RESPONSE_DETAILS (kept until
//!   it is sent).
//! HTTP calls (queued calls, their bodies, timeouts) and shared data/queues have their own
//! bounds, next to their code.

use std::ptr::NonNull;

use wasmer::sys::vm::{MemoryError, MemoryStyle, TableStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

/// Most elements one table may hold: `table.grow` past it returns -1 inside the plugin, and
/// a module that declares more at start is refused at load. Real plugins' function tables
/// hold a few thousand entries; one element is 8 bytes on the host, so 8 MiB per table.
pub const MAX_TABLE_ELEMENTS: u32 = 1 << 20;

/// Most tables a module may define (reference types allow several; SDKs emit one).
pub const MAX_TABLES: usize = 4;

/// Longest message `proxy_log` and WASI `fd_write` (stdout/stderr) pass to the log: longer
/// messages are truncated to it. nginx itself cuts an error-log line at 2 KiB.
pub const MAX_LOG_MESSAGE: usize = 64 * 1024;

/// Most iovecs one `fd_write` may gather (as Linux's IOV_MAX).
pub const MAX_IOVS: u32 = 1024;

/// Largest `random_get` request (cpp-host uses the same cap).
pub const MAX_RANDOM: u32 = 64 * 1024;

/// Largest property value a plugin can set (`proxy_set_property`).
pub const MAX_PROPERTY_VALUE: usize = 64 * 1024;

/// Longest property path a plugin can set.
pub const MAX_PROPERTY_PATH: usize = 1024;

/// Most properties the root contexts of one instance may set (outside any request).
pub const MAX_ROOT_PROPERTIES: usize = 256;

/// Most bytes (paths plus values) the root-context properties of one instance may hold.
pub const MAX_ROOT_PROPERTY_BYTES: usize = 1 << 20;

/// Most header edits (`proxy_add/replace_header_map_value`, and each pair of
/// `proxy_set_header_map_pairs`) one HTTP context may make to one map. nginx keeps every
/// edit in the request's pool until the request ends, replaced values included.
pub const MAX_HEADER_EDITS: u32 = 1024;

/// Most bytes (names plus values) of the header edits one HTTP context may make to one map.
pub const MAX_HEADER_EDIT_BYTES: usize = 1 << 20;

/// Most `proxy_set_property` calls one HTTP context may make on its request (nginx keeps
/// each value set in the request's pool until the request ends).
pub const MAX_PROPERTY_SETS: u32 = 1024;

/// Most bytes (paths plus values) those calls may set, per HTTP context.
pub const MAX_PROPERTY_SET_BYTES: usize = 1 << 20;

/// Largest body a plugin can make a request or response buffer hold (proxy_set_buffer_bytes).
pub const MAX_BODY_BUFFER: usize = 64 << 20;

/// Largest local-response body a plugin can make us hold.
pub const MAX_LOCAL_RESPONSE_BODY: usize = 4 << 20;

/// Longest details string of a local response (Envoy's response code details: a short tag).
pub const MAX_LOCAL_RESPONSE_DETAILS: usize = 64 * 1024;

/// Most pairs in a serialized header map a plugin hands the host (cpp-host's figure).
pub const MAX_PAIRS: usize = 1024;

/// Largest serialized header map a plugin hands the host (cpp-host's figure): checked
/// before anything is copied out of guest memory where the length is known up front.
pub const MAX_SERIALIZED_SIZE: usize = 1 << 20;

/// Limits shared by every instance of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest linear memory a plugin may have, in bytes (rounded down to 64 KiB pages).
    pub max_memory: u64,
    /// Operators one callback may execute; 0 = no budget (no metering compiled in).
    pub max_instructions: u64,
}

/// Defaults: cpp-host's 1 GiB memory cap, and a CPU budget of a billion instructions per
/// callback (about a second): generous for any real filter, but an endless loop ends.
pub const DEFAULT_LIMITS: Limits = Limits { max_memory: 1 << 30, max_instructions: 1_000_000_000 };

impl Default for Limits {
    fn default() -> Limits {
        DEFAULT_LIMITS
    }
}

/// BaseTunables with every memory's maximum clamped to the limit and every table's to
/// MAX_TABLE_ELEMENTS: a `memory.grow` or `table.grow` past it returns -1 inside the plugin,
/// and a module that needs more at start cannot instantiate.
pub(crate) struct LimitingTunables {
    base: BaseTunables,
    max_pages: Pages,
}

impl LimitingTunables {
    pub fn new(max_memory: u64) -> LimitingTunables {
        let pages = (max_memory / wasmer::WASM_PAGE_SIZE as u64).clamp(1, wasmer::WASM_MAX_PAGES as u64) as u32;
        LimitingTunables { base: BaseTunables::new(), max_pages: Pages(pages) }
    }

    fn adjust(&self, ty: &MemoryType) -> MemoryType {
        let mut t = *ty;
        t.maximum = Some(match ty.maximum {
            Some(m) if m < self.max_pages => m,
            _ => self.max_pages,
        });
        t
    }

    fn adjust_table(ty: &TableType) -> TableType {
        let mut t = *ty;
        t.maximum = Some(ty.maximum.map_or(MAX_TABLE_ELEMENTS, |m| m.min(MAX_TABLE_ELEMENTS)));
        t
    }

    fn check_table(ty: &TableType) -> Result<(), String> {
        if ty.minimum > MAX_TABLE_ELEMENTS {
            return Err(format!(
                "the module needs a table of {} elements at start, more than the limit of {MAX_TABLE_ELEMENTS}",
                ty.minimum
            ));
        }
        Ok(())
    }

    fn check(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.max_pages {
            return Err(MemoryError::Generic(format!(
                "the module needs {} pages of memory at start, more than the limit of {} pages",
                ty.minimum.0, self.max_pages.0
            )));
        }
        Ok(())
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(&self.adjust(memory))
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(&Self::adjust_table(table))
    }

    fn create_host_memory(&self, ty: &MemoryType, style: &MemoryStyle) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        self.base.create_host_memory(&self.adjust(ty), style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.check(ty)?;
        // SAFETY: forwarded unchanged from wasmer, which guarantees the location is valid.
        unsafe { self.base.create_vm_memory(&self.adjust(ty), style, vm_definition_location) }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        Self::check_table(ty)?;
        self.base.create_host_table(&Self::adjust_table(ty), style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        Self::check_table(ty)?;
        // SAFETY: as above.
        unsafe { self.base.create_vm_table(&Self::adjust_table(ty), style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}
