//! Resource limits a host puts on plugins: a linear-memory cap (wasmer tunables) and a CPU
//! budget per callback (wasmer's metering middleware counts executed operators).

use std::ptr::NonNull;

use wasmer::sys::vm::{MemoryError, MemoryStyle, TableStyle, VMConfig, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{MemoryType, Pages, TableType};

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

/// BaseTunables with every memory's maximum clamped to the limit: a `memory.grow` past it
/// returns -1 inside the plugin, and a module that needs more at start cannot instantiate.
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
        self.base.table_style(table)
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
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: as above.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }

    fn vmconfig(&self) -> &VMConfig {
        self.base.vmconfig()
    }
}
