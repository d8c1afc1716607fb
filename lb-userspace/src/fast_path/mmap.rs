//! A `BPF_F_MMAPABLE` array map mapped into the agent's memory: a ring of
//! 65537 slots or a whole VIP table is one memcpy, not one syscall per
//! element, and a generation flip is one atomic store.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::MapData;
use bytemuck::Pod;

use super::FastPathError;

pub(super) struct MmapArray {
    ptr: NonNull<u8>,
    /// Bytes of element data (elements x stride).
    len: usize,
    map_len: usize,
    /// Bytes per element: the kernel rounds each value up to 8 bytes.
    stride: usize,
}

impl MmapArray {
    pub(super) fn new(map: &MapData, elements: u32, value_size: usize) -> Result<Self, FastPathError> {
        let stride = value_size.div_ceil(8) * 8;
        let len = elements as usize * stride;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map_len = len.div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: mapping a BPF_F_MMAPABLE array map's fd shared, for its
        // page-rounded value area, is what the kernel offers; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(FastPathError::Mmap { source: std::io::Error::last_os_error() });
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or(FastPathError::Mmap { source: std::io::Error::other("mmap returned null") })?;
        Ok(Self { ptr, len, map_len, stride })
    }

    /// Copies `values` over consecutive elements from `index`.
    pub(super) fn write<T: Pod>(&mut self, index: usize, values: &[T]) {
        assert_eq!(size_of::<T>().div_ceil(8) * 8, self.stride, "element type does not match the map");
        let start = index * self.stride;
        assert!(start + values.len() * self.stride <= self.len, "write out of bounds");
        if size_of::<T>() == self.stride {
            // SAFETY: in bounds (asserted); the caller writes only what the
            // fast path does not read now (a spare generation or region).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    values.as_ptr().cast::<u8>(),
                    self.ptr.as_ptr().add(start),
                    std::mem::size_of_val(values),
                );
            }
        } else {
            for (i, v) in values.iter().enumerate() {
                // SAFETY: as above, one element at a time.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        bytemuck::bytes_of(v).as_ptr(),
                        self.ptr.as_ptr().add(start + i * self.stride),
                        size_of::<T>(),
                    );
                }
            }
        }
    }

    /// Copies `words` (u32s) to the data area starting at u32 offset
    /// `word`: for arrays whose elements are [u32; 2] (no padding).
    pub(super) fn write_words(&mut self, word: usize, words: &[u32]) {
        assert!((word + words.len()) * 4 <= self.len, "write out of bounds");
        // SAFETY: in bounds (asserted); see `write`.
        unsafe {
            std::ptr::copy_nonoverlapping(words.as_ptr(), self.ptr.as_ptr().cast::<u32>().add(word), words.len());
        }
    }

    /// Reads `count` elements from `index`: what an agent before this one
    /// left in the map.
    pub(super) fn read<T: Pod>(&self, index: usize, count: usize) -> Vec<T> {
        assert!(size_of::<T>() <= self.stride, "element type does not match the map");
        let start = index * self.stride;
        assert!(start + count * self.stride <= self.len, "read out of bounds");
        (0..count)
            .map(|i| {
                // SAFETY: in bounds (asserted); T is Pod, so any bytes are a
                // valid T, and read_unaligned needs no alignment.
                unsafe { self.ptr.as_ptr().add(start + i * self.stride).cast::<T>().read_unaligned() }
            })
            .collect()
    }

    /// Reads `len` u32s from u32 offset `word` (see `write_words`).
    pub(super) fn read_words(&self, word: usize, len: usize) -> Vec<u32> {
        assert!((word + len) * 4 <= self.len, "read out of bounds");
        // SAFETY: in bounds (asserted); the mapping is page-aligned, so u32
        // offsets are aligned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u32>().add(word), len) }.to_vec()
    }

    /// The u32 at byte `offset`, as an atomic: the fast path reads it while
    /// the agent stores to it.
    pub(super) fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len, "atomic out of bounds or misaligned");
        // SAFETY: in bounds and 4-aligned (asserted; the mapping is
        // page-aligned); the memory lives as long as `self`, and every
        // access from this process goes through atomics or `write` to other
        // words.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast::<u32>()) }
    }

    pub(super) fn store_release(&self, offset: usize, value: u32) {
        self.atomic_u32(offset).store(value, Ordering::Release);
    }
}

impl Drop for MmapArray {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.map_len) };
    }
}

// SAFETY: the mapping is owned by this value; nothing else holds the pointer.
unsafe impl Send for MmapArray {}
