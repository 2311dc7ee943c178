//! Handing freed heap memory back to the system.
//!
//! glibc's allocator keeps freed chunks for reuse and returns memory to the system only
//! from the top of the heap. After a burst of calls (the calls in flight hold their
//! futures, buffers and messages at once) the heap stays at its high-water mark, and every
//! bridge a client spawns would keep its peak. `proxy::stdio` calls [`release_free_heap`]
//! once the session has gone quiet; the next burst pays a few page faults.

/// Return the free pages of the heap to the system (glibc's `malloc_trim`); a no-op on
/// other C libraries.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds as free; it takes no
    // pointers and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
