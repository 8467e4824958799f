//! Helpers shared by ember's fuzz targets: a byte cursor that turns the fuzzer's input into
//! choices, a per-process scratch file for the loaders that only take paths, and the small
//! model the checkpoint target loads into (the seed generator builds the same one).

use ember_core::Activation;
use ember_nn::layers::{BatchNorm1d, Dense};
use ember_nn::loss::Loss;
use ember_nn::model::Model;
use ember_nn::optim::Optimizer;
use ember_nn::sequential::Sequential;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::PathBuf;

/// Reads choices off the front of a fuzz input; past the end every read yields zero, so any
/// input, even an empty one, is a valid program.
pub struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    /// A cursor over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Cursor { data }
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes as a little-endian `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// A file path private to this process (and `tag`), for loaders that read from a path. The
/// fuzzer runs one input at a time per process, so reusing the path is safe. The folder is
/// `fuzz/corpus-work/scratch-<pid>/` (ignored by git); scripts/fuzz.sh removes it afterwards.
pub fn scratch_path(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus-work")
        .join(format!("scratch-{}", std::process::id()));
    // An existing directory is fine; any other failure shows up when the file is written.
    let _ = std::fs::create_dir_all(&dir);
    dir.join(tag)
}

/// The model the checkpoint target loads into: Dense(3→4, relu), BatchNorm1d(4) (whose running
/// statistics are buffers), Dense(4→2); Adam (two state buffers per parameter), seeded.
///
/// Panics only if ember-nn rejects these fixed, valid sizes, which the seed generator and the
/// target would both report at once.
pub fn small_model() -> Model {
    let mut rng = StdRng::seed_from_u64(7);
    let net = Sequential::new()
        .add(Dense::new(3, 4, Activation::Relu, &mut rng).expect("Dense(3, 4)"))
        .add(BatchNorm1d::new(4).expect("BatchNorm1d(4)"))
        .add(Dense::new(4, 2, Activation::None, &mut rng).expect("Dense(4, 2)"));
    net.compile(Optimizer::adam(), Loss::CrossEntropy, &[])
}
