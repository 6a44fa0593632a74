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
//! The cache keeps only what will be asked for: a freed block is kept when
//! a request of its size and alignment went through the cache
//! before and has not yet been matched by a kept block. A kernel that
//! builds its output another way (a `collect`) frees it straight back to
//! the allocator, which reuses it; kept, it would wait for a request that
//! never comes, and every step would map fresh pages.
//!
//! The cache is bounded ([`DEFAULT_LIMIT`] bytes per thread unless
//! [`set_cache_limit`] says otherwise). When a freed block would go over,
//! the blocks freed longest ago go back to the allocator first, so a
//! program whose sizes change (a new batch size, a new input) keeps
//! reusing the sizes of its current step. [`empty_cache`] hands everything
//! back.
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
use std::collections::BTreeMap;
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

/// At most this many sizes are remembered; past it, the sizes with no
/// block waiting are forgotten.
const MAX_SIZES: usize = 1024;

/// A block's size and alignment: blocks are reused only for exactly these.
type Key = (usize, usize);

/// The blocks of one size, and how many more it may keep.
#[derive(Default)]
struct Size {
    /// Free blocks, oldest first, with the stamp of when each was kept.
    blocks: Vec<(u64, NonNull<u8>)>,
    /// Requests of this size not yet matched by a kept block: each request
    /// adds one, each kept block takes one. A loop that asks for `r`
    /// blocks of a size per step keeps at most `r` of them, however many
    /// more of that size other kernels make and free.
    credit: usize,
}

#[derive(Default)]
struct Cache {
    sizes: FxHashMap<Key, Size>,
    /// Every kept block's size by its stamp: the oldest is evicted first.
    by_age: BTreeMap<u64, Key>,
    next_stamp: u64,
    bytes: usize,
}

impl Cache {
    /// The newest kept block of `layout`, if any; either way the request
    /// earns its size the credit to keep one block more.
    fn take(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        let key = (layout.size(), layout.align());
        if !self.sizes.contains_key(&key) && self.sizes.len() >= MAX_SIZES {
            self.sizes.retain(|_, size| !size.blocks.is_empty());
        }
        let size = self.sizes.entry(key).or_default();
        size.credit = size.credit.saturating_add(1);
        let (stamp, block) = size.blocks.pop()?;
        self.by_age.remove(&stamp);
        self.bytes -= layout.size();
        Some(block)
    }

    /// Keeps `block` (of `layout`) if its size has credit, evicting the
    /// oldest blocks to stay within the limit.
    fn keep(&mut self, block: NonNull<u8>, layout: Layout) -> bool {
        let key = (layout.size(), layout.align());
        let limit = LIMIT.load(Ordering::Relaxed);
        let has_credit = self.sizes.get(&key).is_some_and(|size| size.credit > 0);
        if layout.size() > limit || !has_credit {
            return false;
        }
        while self.bytes + layout.size() > limit {
            self.evict_oldest();
        }
        self.bytes += layout.size();
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.by_age.insert(stamp, key);
        let size = self.sizes.get_mut(&key).expect("checked above");
        size.credit -= 1;
        size.blocks.push((stamp, block));
        true
    }

    /// Frees the block kept longest ago (the first of its size's list:
    /// lists grow in stamp order and are taken from the end).
    fn evict_oldest(&mut self) {
        let Some((stamp, key)) = self.by_age.pop_first() else {
            return;
        };
        let size = self.sizes.get_mut(&key).expect("a kept block's size");
        let (first, block) = size.blocks.remove(0);
        debug_assert_eq!(first, stamp);
        self.bytes -= key.0;
        free_block(block, key);
    }

    fn release_all(&mut self) {
        // The sizes stay asked for: only the memory goes back.
        for (&key, size) in self.sizes.iter_mut() {
            for (_, block) in size.blocks.drain(..) {
                free_block(block, key);
            }
        }
        self.by_age.clear();
        self.bytes = 0;
    }
}

/// Hands a cached block back to the global allocator.
fn free_block(block: NonNull<u8>, (size, align): Key) {
    let layout = Layout::from_size_align(size, align).expect("kept with this layout");
    // SAFETY: each block was allocated by the global allocator with this
    // layout (a `Vec`'s buffer), and is owned by nobody.
    unsafe { std::alloc::dealloc(block.as_ptr(), layout) };
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
    fn small_buffers_and_blocks_nobody_asked_for_are_left_to_the_allocator() {
        empty_cache();
        let _: Vec<f64> = vec_with_capacity(16);
        recycle(Vec::<f64>::with_capacity(16));
        assert_eq!(cached_bytes(), 0);
        // 80 KiB of i64, as an argmin's `collect` makes: no request of this
        // size came through the cache, so nothing would take it back.
        recycle(Vec::<i64>::with_capacity(10_007));
        assert_eq!(cached_bytes(), 0);
        // One request earns one kept block of its size, not two.
        let asked: Vec<i64> = vec_with_capacity(10_007);
        recycle(asked);
        assert_eq!(cached_bytes(), 8 * 10_007);
        recycle(Vec::<i64>::with_capacity(10_007));
        assert_eq!(cached_bytes(), 8 * 10_007);
        empty_cache();
        assert_eq!(cached_bytes(), 0);
    }

    #[test]
    fn a_full_cache_evicts_the_blocks_freed_longest_ago() {
        empty_cache();
        // Capacity only: these blocks are never touched, so never mapped.
        let big = DEFAULT_LIMIT / 3 + 1;
        let first: Vec<u8> = vec_with_capacity(big);
        let second: Vec<u8> = vec_with_capacity(big);
        let third: Vec<u8> = vec_with_capacity(big);
        let (second_ptr, third_ptr) = (second.as_ptr(), third.as_ptr());
        recycle(first);
        recycle(second);
        recycle(third); // three would exceed the cap: the first goes
        assert_eq!(cached_bytes(), 2 * big);
        let newest: Vec<u8> = vec_with_capacity(big);
        let older: Vec<u8> = vec_with_capacity(big);
        assert_eq!((newest.as_ptr(), older.as_ptr()), (third_ptr, second_ptr));
        assert_eq!(cached_bytes(), 0);
        // A block larger than the whole cache is never kept.
        drop((newest, older));
        let huge: Vec<u8> = vec_with_capacity(DEFAULT_LIMIT + 1);
        recycle(huge);
        assert_eq!(cached_bytes(), 0);
    }

    #[test]
    fn a_step_that_frees_more_of_a_size_than_it_asks_for_keeps_the_cache_flat() {
        empty_cache();
        let x = crate::Tensor::ones(&[10_000, 10], crate::DType::F64);
        let step = || {
            // 80 KB of indices, made by a `collect`, and a (10000,) sum
            // of the same 80 KB asked for through the cache.
            let nearest = x.argmin(1, false);
            let sums = x.sum_axes(&[1], false);
            drop((nearest, sums));
        };
        step();
        let after_one = cached_bytes();
        for _ in 0..100 {
            step();
        }
        assert_eq!(cached_bytes(), after_one);
        empty_cache();
    }
}
