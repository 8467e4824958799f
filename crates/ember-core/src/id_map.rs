//! Hash maps keyed by tensor id, for the backward walk.
//!
//! Tensor ids are unique counters, so the default SipHash is wasted work on them: a step of the
//! seed model does a few dozen lookups. This module holds the cheap hasher the walk uses; it is
//! plumbing, kept out of `backprop.rs` so that file reads as the walk and the rules only.

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
/// A set of tensor ids.
pub(crate) type IdSet = HashSet<TensorId, BuildHasherDefault<IdHasher>>;
