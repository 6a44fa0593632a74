//! Reuse of large buffers between steps: a caching allocator, as PyTorch
//! keeps one for GPU memory.
//!
//! A training step allocates the same sizes every iteration. Through the
//! system allocator a large buffer is mapped fresh and faulted in page by
//! page each time (glibc serves blocks above its mmap threshold, 128 KiB at
//! first, straight from the kernel). Here a freed buffer of at least
//! [`MIN_BYTES`] waits in its thread's cache, keyed by its exact size and
//! alignment, until the next request of that size takes it back.
//!
//! The cache is bounded ([`DEFAULT_LIMIT`] bytes per thread unless
//! [`set_cache_limit`] says otherwise; a buffer that would go over it is
//! freed for real), and [`empty_cache`] hands everything back.
//! Buffers are only ever reused whole, by a tensor whose kernel writes every
//! element, so no value of an earlier tensor can be read through one.
//!
//! Written here rather than taken from a crate: `vecpool` hands back any
//! buffer at least as large as asked and keeps no byte limit, and
//! `zeropool` pools byte buffers in power-of-two classes (up to twice the
//! memory for a typed buffer); a step reuses exact sizes, so exact keys
//! waste nothing.

use rustc_hash::FxHashMap;
use std::alloc::Layout;
use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest buffer the cache keeps, in bytes: below it the allocator's
/// own size classes are as fast as a cache.
pub const MIN_BYTES: usize = 64 << 10;

/// At most this many bytes wait in one thread's cache, unless
/// [`set_cache_limit`] changes it.
pub const DEFAULT_LIMIT: usize = 256 << 20;

/// The limit of every thread's cache (see [`set_cache_limit`]).
static LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_LIMIT);

#[derive(Default)]
struct Cache {
    /// Free blocks by (bytes, alignment).
    free: FxHashMap<(usize, usize), Vec<NonNull<u8>>>,
    bytes: usize,
}

impl Cache {
    fn take(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let block = self.free.get_mut(&(layout.size(), layout.align()))?.pop()?;
        self.bytes -= layout.size();
        Some(block)
    }

    /// Keeps `block` (of `layout`) unless that would exceed the cap.
    fn keep(&mut self, block: NonNull<u8>, layout: Layout) -> bool {
        if self.bytes + layout.size() > LIMIT.load(Ordering::Relaxed) {
            return false;
        }
        self.bytes += layout.size();
        self.free
            .entry((layout.size(), layout.align()))
            .or_default()
            .push(block);
        true
    }

    fn release_all(&mut self) {
        for ((size, align), blocks) in self.free.drain() {
            let layout = Layout::from_size_align(size, align).expect("kept with this layout");
            for block in blocks {
                // SAFETY: each block was allocated by the global allocator
                // with this layout (a `Vec`'s buffer), and is owned by nobody.
                unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
            }
        }
        self.bytes = 0;
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.release_all();
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// An empty `Vec` with room for exactly `n` elements: a cached block of
/// that size when there is one.
pub(crate) fn vec_with_capacity<T: Copy>(n: usize) -> Vec<T> {
    let Ok(layout) = Layout::array::<T>(n) else {
        return Vec::with_capacity(n); // panics with the usual message
    };
    if layout.size() < MIN_BYTES {
        return Vec::with_capacity(n);
    }
    let block = CACHE
        .try_with(|c| c.borrow_mut().take(layout))
        .ok()
        .flatten();
    match block {
        // SAFETY: the block was a `Vec`'s buffer of `layout` (size
        // `n * size_of::<T>()`, `T`'s alignment), so it is one for a `Vec<T>`
        // of capacity `n`; length 0 reads nothing of it.
        Some(block) => unsafe { Vec::from_raw_parts(block.as_ptr() as *mut T, 0, n) },
        None => Vec::with_capacity(n),
    }
}

/// `n` copies of `value`, in a cached block when there is one.
pub(crate) fn filled_vec<T: Copy>(n: usize, value: T) -> Vec<T> {
    let mut v = vec_with_capacity(n);
    v.resize(n, value);
    v
}

/// Takes back the buffer of a `Vec` being dropped (its elements are `Copy`:
/// nothing to drop but the memory).
pub(crate) fn recycle<T: Copy>(v: Vec<T>) {
    let Ok(layout) = Layout::array::<T>(v.capacity()) else {
        return;
    };
    if layout.size() < MIN_BYTES {
        return;
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    let block = NonNull::new(v.as_mut_ptr() as *mut u8).expect("a Vec's buffer is not null");
    let kept = CACHE
        .try_with(|c| c.borrow_mut().keep(block, layout))
        .unwrap_or(false);
    if !kept {
        drop(std::mem::ManuallyDrop::into_inner(v));
    }
}

/// Hands every cached buffer of this thread back to the allocator (like
/// `torch.cuda.empty_cache`): for a program that is done with a phase of
/// large tensors and wants the memory back.
///
/// ```
/// use chainrule::{memory, DType, Tensor};
/// drop(Tensor::zeros(&[1 << 16], DType::F32)); // 256 KiB, cached when freed
/// assert!(memory::cached_bytes() >= 1 << 18);
/// memory::empty_cache();
/// assert_eq!(memory::cached_bytes(), 0);
/// ```
pub fn empty_cache() {
    let _ = CACHE.try_with(|c| c.borrow_mut().release_all());
}

/// Sets how many bytes of freed buffers each thread may keep for reuse
/// (0 turns the cache off), and empties this thread's cache. The default
/// is [`DEFAULT_LIMIT`].
///
/// ```
/// use chainrule::{memory, DType, Tensor};
/// memory::set_cache_limit(0);
/// drop(Tensor::zeros(&[1 << 16], DType::F32));
/// assert_eq!(memory::cached_bytes(), 0);
/// memory::set_cache_limit(memory::DEFAULT_LIMIT);
/// ```
pub fn set_cache_limit(bytes: usize) {
    LIMIT.store(bytes, Ordering::Relaxed);
    empty_cache();
}

/// How many bytes of freed buffers this thread's cache holds for reuse.
///
/// ```
/// use chainrule::memory;
/// memory::empty_cache();
/// assert_eq!(memory::cached_bytes(), 0);
/// ```
pub fn cached_bytes() -> usize {
    CACHE.try_with(|c| c.borrow().bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_buffer_is_reused_by_the_next_request_of_its_size() {
        empty_cache();
        let v: Vec<f32> = vec_with_capacity(1 << 15);
        let ptr = v.as_ptr();
        recycle(v);
        assert_eq!(cached_bytes(), 4 << 15);
        let again: Vec<f32> = vec_with_capacity(1 << 15);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!((again.len(), again.capacity()), (0, 1 << 15));
        assert_eq!(cached_bytes(), 0);
        // Another size or alignment does not take it.
        recycle(again);
        let other: Vec<f32> = vec_with_capacity((1 << 15) + 1);
        assert_ne!(other.as_ptr(), ptr);
        let wider: Vec<f64> = vec_with_capacity(1 << 14);
        assert_ne!(wider.as_ptr() as *const f32, ptr);
        empty_cache();
    }

    #[test]
    fn small_buffers_are_left_to_the_allocator_and_the_cache_is_bounded() {
        empty_cache();
        recycle(Vec::<f64>::with_capacity(16));
        assert_eq!(cached_bytes(), 0);
        let big = DEFAULT_LIMIT / 2 + 1;
        recycle(Vec::<u8>::with_capacity(big));
        recycle(Vec::<u8>::with_capacity(big)); // would exceed the cap: freed
        assert_eq!(cached_bytes(), big);
        empty_cache();
        assert_eq!(cached_bytes(), 0);
    }
}
