//! A size-class allocator for the component's own memory.
//!
//! Every hook call hands the guest its session record: a handful of small
//! strings and lists that the canonical ABI allocates (through
//! `cabi_realloc`) before the call and the bindings free after it. With
//! Rust's default wasm allocator (dlmalloc) that churn costs about 280
//! instructions per allocation and as much again per free, a quarter of a
//! hook call; talc measured no better. Here a small block is taken from, and
//! returned to, a free list of its size class: a few dozen instructions.
//!
//! Blocks of up to [`LARGEST_CLASS`] bytes (alignment up to 16) come from
//! 16 KiB chunks obtained from the system allocator and are never given
//! back to it, only reused for the same class: memory stays bounded by the
//! peak number of live blocks of each class, which is what a per-session
//! instance wants. Larger or more aligned requests go to the system
//! allocator directly.
//!
//! Single-threaded by design: a component instance never runs two calls at
//! once and wasm32 without the `atomics` feature has no threads.

#![allow(unsafe_code)] // a global allocator is raw-pointer code by nature

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Block sizes, each a multiple of 16 so that every block is 16-aligned.
const CLASSES: [usize; 7] = [16, 32, 64, 128, 256, 512, 1024];
/// The largest request served from a size class.
pub const LARGEST_CLASS: usize = CLASSES[CLASSES.len() - 1];
/// The largest alignment served from a size class.
const MAX_ALIGN: usize = 16;
/// Bytes taken from the system allocator at a time for small blocks.
const CHUNK: usize = 16 * 1024;

/// The free lists and the chunk being carved.
struct Pools {
    /// Head of each class's list of free blocks; a free block's first word
    /// points to the next.
    free: [*mut u8; CLASSES.len()],
    /// Next unused byte of the current chunk.
    bump: *mut u8,
    /// Bytes left in the current chunk.
    left: usize,
}

/// Small blocks from per-size free lists, the rest from [`System`].
pub struct SizeClassAllocator {
    pools: UnsafeCell<Pools>,
}

// SAFETY: only used where there is a single thread (see the module docs);
// the tests use their own instances from one thread each.
unsafe impl Sync for SizeClassAllocator {}

impl SizeClassAllocator {
    /// An allocator with empty pools.
    pub const fn new() -> Self {
        Self {
            pools: UnsafeCell::new(Pools {
                free: [ptr::null_mut(); CLASSES.len()],
                bump: ptr::null_mut(),
                left: 0,
            }),
        }
    }
}

impl Default for SizeClassAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class serving `layout`, if any.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > MAX_ALIGN {
        return None;
    }
    let size = layout.size();
    CLASSES.iter().position(|&class| size <= class)
}

unsafe impl GlobalAlloc for SizeClassAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded (module docs), and no reference into the
        // pools outlives this call.
        let pools = unsafe { &mut *self.pools.get() };
        let head = pools.free[class];
        if !head.is_null() {
            // SAFETY: `head` is a free block of this class; its first word
            // holds the next free block (written by `dealloc`).
            pools.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = CLASSES[class];
        if pools.left < size {
            // The rest of the old chunk (less than one block of this class)
            // is left unused.
            // SAFETY: CHUNK and MAX_ALIGN make a valid, non-zero layout.
            let chunk =
                unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, MAX_ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            pools.bump = chunk;
            pools.left = CHUNK;
        }
        let block = pools.bump;
        // SAFETY: `size <= left`, so the result stays inside the chunk.
        pools.bump = unsafe { block.add(size) };
        pools.left -= size;
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: blocks of this layout came from `System.alloc`.
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: as in `alloc`.
        let pools = unsafe { &mut *self.pools.get() };
        // SAFETY: `block` is a block of this class (at least 16 bytes,
        // 16-aligned) that the caller no longer uses.
        unsafe { block.cast::<*mut u8>().write(pools.free[class]) };
        pools.free[class] = block;
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with this alignment is a
        // valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // Same block size: nothing to move.
            (Some(old), Some(new)) if old == new => block,
            // Both from the system allocator: let it resize in place if it can.
            // SAFETY: forwarded unchanged.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: `new_layout` is valid (above).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // are distinct allocations.
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid layout")
    }

    #[test]
    fn small_blocks_are_aligned_distinct_and_reused_per_class() {
        let allocator = SizeClassAllocator::new();
        unsafe {
            let a = allocator.alloc(layout(10, 1));
            let b = allocator.alloc(layout(16, 8));
            let c = allocator.alloc(layout(100, 4));
            for block in [a, b, c] {
                assert!(!block.is_null());
                assert_eq!(block as usize % MAX_ALIGN, 0);
            }
            assert_ne!(a, b);
            // Writing a whole block does not touch its neighbours.
            a.write_bytes(0xAA, 16);
            b.write_bytes(0xBB, 16);
            assert_eq!(a.read(), 0xAA);
            assert_eq!(a.add(15).read(), 0xAA);
            allocator.dealloc(a, layout(10, 1));
            // The freed block serves the next request of its class, not another.
            assert_ne!(allocator.alloc(layout(200, 1)), a);
            assert_eq!(allocator.alloc(layout(12, 2)), a);
            allocator.dealloc(c, layout(100, 4));
            assert_eq!(allocator.alloc(layout(65, 1)), c);
        }
    }

    #[test]
    fn large_or_over_aligned_requests_go_to_the_system() {
        let allocator = SizeClassAllocator::new();
        unsafe {
            for request in [
                layout(LARGEST_CLASS + 1, 1),
                layout(64 * 1024, 8),
                layout(32, 64),
            ] {
                let block = allocator.alloc(request);
                assert!(!block.is_null());
                assert_eq!(block as usize % request.align(), 0);
                block.write_bytes(7, request.size());
                allocator.dealloc(block, request);
            }
        }
    }

    #[test]
    fn realloc_keeps_the_contents_across_classes_and_the_system() {
        let allocator = SizeClassAllocator::new();
        unsafe {
            let mut size = 3;
            let mut block = allocator.alloc(layout(size, 1));
            block.copy_from_nonoverlapping(b"abc".as_ptr(), 3);
            for new_size in [15, 16, 17, 600, 5000, 70, 3] {
                block = allocator.realloc(block, layout(size, 1), new_size);
                assert!(!block.is_null());
                assert_eq!(std::slice::from_raw_parts(block, 3), b"abc");
                size = new_size;
            }
            allocator.dealloc(block, layout(size, 1));
        }
    }

    #[test]
    fn many_blocks_span_chunks_without_overlap() {
        let allocator = SizeClassAllocator::new();
        let request = layout(200, 8);
        unsafe {
            let blocks: Vec<*mut u8> = (0..500).map(|_| allocator.alloc(request)).collect();
            for (i, &block) in blocks.iter().enumerate() {
                block.write_bytes(i as u8, 200);
            }
            for (i, &block) in blocks.iter().enumerate() {
                assert!(
                    std::slice::from_raw_parts(block, 200)
                        .iter()
                        .all(|&b| b == i as u8)
                );
            }
            let mut sorted = blocks.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), blocks.len());
            for block in blocks {
                allocator.dealloc(block, request);
            }
        }
    }
}
