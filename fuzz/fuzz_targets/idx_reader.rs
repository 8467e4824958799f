//! Fuzzes the IDX (MNIST) reader: `ember_nn::data::parse_idx` on raw bytes, on the same bytes
//! gzip-compressed (so the decoder's output, not just its input, is fuzzed), and
//! `load_mnist` on an image file and a label file cut from the input.
//!
//! Input: byte 0 picks the mode (raw, gzipped, or `load_mnist`); for `load_mnist`, bytes 1-2
//! give where the rest is cut into the images part and the labels part.
//! Oracle: no panic; an `Ok` array holds exactly the product of its dimensions in values, and
//! `load_mnist`'s tensors are `[n, rows*cols]` and `[n]` with pixels in [0, 1].
#![no_main]

use ember_fuzz::{Cursor, scratch_path};
use ember_nn::data;
use flate2::Compression;
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fn check(raw: &[u8]) {
    if let Ok(a) = data::parse_idx(raw, "fuzz.idx") {
        let count = a.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        assert_eq!(count, Some(a.data.len()), "dims {:?}", a.dims);
    }
}

fuzz_target!(|input: &[u8]| {
    let mut c = Cursor::new(input);
    match c.byte() % 3 {
        0 => check(c.rest()),
        1 => {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            // Writing to a Vec cannot fail.
            gz.write_all(c.rest()).expect("gzip into memory");
            check(&gz.finish().expect("gzip into memory"));
        }
        _ => {
            let cut = c.u16() as usize;
            let rest = c.rest();
            let (images, labels) = rest.split_at(cut.min(rest.len()));
            let (ip, lp) = (scratch_path("images.idx"), scratch_path("labels.idx"));
            if std::fs::write(&ip, images).is_err() || std::fs::write(&lp, labels).is_err() {
                return;
            }
            if let Ok((x, y)) = data::load_mnist(&ip, &lp) {
                let n = y.shape()[0];
                assert_eq!(x.rank(), 2);
                assert_eq!(x.shape()[0], n);
                let pixels = x.to_vec::<f32>().expect("f32 pixels");
                assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
            }
        }
    }
});
