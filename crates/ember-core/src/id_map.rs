//! Hash maps keyed by tensor id, for the backward walk.
//!
//! Tensor ids are unique counters, so the default SipHash is wasted work on them: a step of the
//! seed model does a few dozen lookups. This module holds the cheap hasher the walk uses; it is
//! plumbing, kept out of `backprop.rs` so that file reads as the walk and the rules only.
//!
//! The walk's visited set is usually tiny (a training step of a small network has a dozen
//! nodes), so [`IdSet`] keeps its first ids in an inline array searched linearly — no heap
//! allocation, no hashing — and moves to a hash set only past that.

use crate::tensor::TensorId;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Tensor ids are unique counters: SipHash (the default) is wasted work on them in the backward
/// walk, so one multiply by a large odd constant (Fibonacci hashing) spreads an id over all 64
/// bits, which the hash table's tag bits need.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A map keyed by tensor id.
pub(crate) type IdMap<V> = HashMap<TensorId, V, BuildHasherDefault<IdHasher>>;
/// How many ids [`IdSet`] keeps inline before it moves to a hash set.
const INLINE_IDS: usize = 32;

/// A set of tensor ids: inline and linearly searched while small, hashed beyond
/// [`INLINE_IDS`] entries (the same answers either way).
pub(crate) struct IdSet {
    /// The first ids, in insertion order (`len` of them are set).
    inline: [TensorId; INLINE_IDS],
    /// How many of `inline` are set.
    len: usize,
    /// Every id, once the set has outgrown `inline` (then `inline` is no longer read).
    spill: Option<HashSet<TensorId, BuildHasherDefault<IdHasher>>>,
}

impl IdSet {
    /// An empty set.
    pub(crate) fn new() -> IdSet {
        IdSet {
            inline: [TensorId::NONE; INLINE_IDS],
            len: 0,
            spill: None,
        }
    }

    /// Whether `id` is in the set.
    #[inline]
    pub(crate) fn contains(&self, id: TensorId) -> bool {
        match &self.spill {
            Some(set) => set.contains(&id),
            None => self.inline[..self.len].contains(&id),
        }
    }

    /// Adds `id`; false when it was already there.
    #[inline]
    pub(crate) fn insert(&mut self, id: TensorId) -> bool {
        if let Some(set) = &mut self.spill {
            return set.insert(id);
        }
        if self.inline[..self.len].contains(&id) {
            return false;
        }
        if self.len < INLINE_IDS {
            self.inline[self.len] = id;
            self.len += 1;
            return true;
        }
        let mut set: HashSet<TensorId, BuildHasherDefault<IdHasher>> =
            HashSet::with_capacity_and_hasher(4 * INLINE_IDS, Default::default());
        set.extend(self.inline.iter().copied());
        set.insert(id);
        self.spill = Some(set);
        true
    }
}
