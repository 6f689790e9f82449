//! Compiling in a child process. A compile leaves the compiling process's heap fragmented
//! (Cranelift's working memory, spread over the compile threads' malloc arenas): in the
//! nginx master that garbage is resident, and every worker forked from it inherits it (with
//! 20 modules, about 55 MiB of each worker's RSS). Compiled in a short-lived child instead,
//! the module comes back as its serialized artifact, which the parent loads as it loads a
//! cache hit, and the garbage dies with the child.
//!
//! The child writes `tag (u8) | length (u64 LE) | payload` to a pipe: tag 0 is the
//! artifact, tag 1 an error message. Success is decided by that record alone, complete and
//! well-formed, never by the exit status, which the embedder's SIGCHLD handler may have
//! reaped first (nginx in single-process mode).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use wasmer::Module;

use crate::runtime::{build_engine, compile, validate, CompiledModule, Engine};

/// The largest artifact the parent reads: what it allocates for the pipe's contents is
/// bounded.
const MAX_ARTIFACT: u64 = 1 << 30;

/// Compiles `bytes` in a child process and loads the result here. Returns the module and
/// its serialized artifact (for the cache). Err(None): no child could be started (the
/// caller compiles in this process); Err(Some(msg)): the module does not compile, or the
/// child failed, said in words.
pub fn compile_in_child(engine: &Engine, bytes: &[u8]) -> Result<(CompiledModule, Vec<u8>), Option<String>> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(None);
    }
    // SAFETY: both descriptors were just opened by pipe2 and are owned here only.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fork has no preconditions; the child only compiles (which starts its own
    // threads), writes to the pipe and leaves with _exit, running no handler or destructor
    // of the parent's state.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(None);
    }
    if pid == 0 {
        drop(rd);
        child(engine, bytes, std::fs::File::from(wr));
    }
    drop(wr);
    let mut out = Vec::new();
    // Read at most one byte past the largest record accepted, so the check below sees it.
    let read = std::fs::File::from(rd).take(9 + MAX_ARTIFACT + 1).read_to_end(&mut out);
    let status = reap(pid);
    let failed = || Some(format!("cannot be compiled: the compile process {status}"));
    read.map_err(|_| failed())?;
    if out.len() < 9 {
        return Err(failed());
    }
    let len = u64::from_le_bytes(out[1..9].try_into().expect("8 bytes"));
    if len > MAX_ARTIFACT || len != (out.len() - 9) as u64 {
        return Err(failed());
    }
    let payload = out.split_off(9);
    match out[0] {
        0 => {
            let wasmer_engine = build_engine(engine);
            // SAFETY: the artifact is what `compile` made and serialized a moment ago in a
            // child of this process, same binary and same engine settings, handed over
            // through a pipe only the two processes hold.
            let module = unsafe { Module::deserialize(&wasmer_engine, &*payload) }
                .map_err(|e| Some(format!("cannot load its compiled form: {e}")))?;
            Ok((validate(&wasmer_engine, module).map_err(Some)?, payload))
        }
        1 => Err(Some(String::from_utf8_lossy(&payload).into_owned())),
        _ => Err(failed()),
    }
}

/// The child's whole life: compile, serialize, write the record, leave.
fn child(engine: &Engine, bytes: &[u8], mut pipe: std::fs::File) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        compile(engine, bytes).and_then(|m| m.module.serialize().map(|a| a.to_vec()).map_err(|e| format!("cannot be serialized: {e}")))
    }))
    .unwrap_or_else(|_| Err("made the compiler panic".to_string()));
    let (tag, payload) = match result {
        Ok(artifact) => (0u8, artifact),
        Err(msg) => (1u8, msg.into_bytes()),
    };
    let mut head = [0u8; 9];
    head[0] = tag;
    head[1..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let ok = pipe.write_all(&head).and_then(|_| pipe.write_all(&payload)).is_ok();
    // SAFETY: _exit ends the child without running the parent's atexit handlers or flushing
    // its stdio buffers, which belong to the parent.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Waits for the child; says how it ended, for an error message.
fn reap(pid: libc::pid_t) -> String {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        // ECHILD: the embedder's SIGCHLD handler reaped it first.
        return "ended without a result".to_string();
    }
    if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exited with status {} without a result", libc::WEXITSTATUS(status))
    }
}
