//! The global allocator: the system's, with large blocks marked for transparent huge pages.
//!
//! The orders stage reads the lines in customer order, i.e. at random places in arrays of 8
//! bytes per line (800 MB each at 100M lines). With 4 KiB pages nearly every such read also
//! misses the TLB. Where the kernel makes huge pages only on request (`madvise` mode, this
//! machine's and a common default), blocks of `HUGE_FROM` bytes or more are requested as
//! 2 MiB pages. Measured at 100M Parquet lines, two interleaved runs each: 56.0 / 55.7 s →
//! 55.1 / 50.7 s, kernel time 27.8 / 22.2 s → 20.8 / 18.3 s, orders stage 13.2 / 13.9 s →
//! 12.7 / 10.1 s. At 10M lines (arrays of 80 MB, under the threshold) nothing changes; with a
//! 32 MiB threshold the 10M run got slower (4.9–5.4 s against 4.6–4.9 s: the kernel compacts
//! memory to find huge pages on first touch).

use std::alloc::{GlobalAlloc, Layout, System};

/// The system allocator, advising huge pages for blocks of at least `HUGE_FROM` bytes.
pub struct HugeAlloc;

/// Blocks this large hold line or order arrays of 32M lines or more; smaller ones are left to
/// the kernel's default (see above).
const HUGE_FROM: usize = 256 << 20;

const HUGE_PAGE: usize = 2 << 20;

/// Asks for huge pages over the whole 2 MiB pages inside `[p, p + size)`.
fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && size >= HUGE_FROM {
        let start = (p as usize).next_multiple_of(HUGE_PAGE);
        let end = (p as usize + size) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: the range lies inside the block just allocated; madvise only changes
            // how the kernel backs it, and a failure (e.g. THP off) leaves it as it was.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, size);
}

// SAFETY: every call goes to `System` with the same arguments; `advise` does not touch the
// block's contents.
unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        advise(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        advise(p, new_size);
        p
    }
}
