//! How the coordinator's memory allocator keeps memory it is given back.
//!
//! With thousands of regions the coordinator goes through phases that each
//! allocate megabytes and free them: reading a part's result, decoding it,
//! merging, summarising, writing the report. glibc's malloc gives each
//! thread its own arena and returns large freed blocks to the kernel, so
//! every phase starts on fresh pages, and a fresh page costs a page fault
//! (several microseconds in a virtual machine). One arena, and freed memory
//! kept for reuse, cut the time after the last worker ends by half at
//! 10,000 regions; the coordinator's few threads rarely allocate at once.
//! Applied on the byte-range path only: with a worker process per region,
//! starting thousands of them measured 5-10% slower with these settings.
//!
//! Memory kept that way can also be made resident ahead of need
//! ([`prefault_heap`]): at 10,000 regions, decoding the last part's result
//! into fresh pages took about 1,300 page faults, half its time.

/// Applies the settings above (glibc on Linux only; elsewhere nothing).
pub(crate) fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters; it is
    // safe to call at any time, from any thread.
    unsafe {
        // Blocks up to 32 MB (the largest glibc allows) come from the heap,
        // which keeps freed memory instead of unmapping it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Makes the next `bytes` of the heap resident now: allocates them, writes
/// a byte per page and frees them again (kept by the settings above, and
/// handed out again by the next allocations). Called while the last workers
/// still run, on a core an earlier worker left free, it takes the page
/// faults of decoding the last results out of the time after the last
/// worker ends. Up to 30 MB, below the size glibc maps apart from the heap.
pub(crate) fn prefault_heap(bytes: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const PAGE: usize = 4096;
        let bytes = bytes.min(30 << 20);
        // SAFETY: the block is written only within its `bytes` bytes, and
        // freed once, by the allocator that gave it.
        unsafe {
            let block = libc::malloc(bytes) as *mut u8;
            if block.is_null() {
                return;
            }
            for offset in (0..bytes).step_by(PAGE) {
                block.add(offset).write_volatile(0);
            }
            libc::free(block as *mut libc::c_void);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}
