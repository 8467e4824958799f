//! Grayscale images out: a grid of samples (what a GAN draws each epoch) written as PNG.
//!
//! A PNG is a signature and a list of chunks (length, type, data, CRC-32 of type and data):
//! `IHDR` (size, 8-bit grayscale), `IDAT` (the rows, each prefixed by filter type 0, compressed
//! with zlib) and `IEND`. flate2, already used for the MNIST `.gz` files, provides both the
//! zlib stream and the CRC-32 (the same polynomial gzip uses), so no image crate is needed for
//! this one format. Files are written atomically, like checkpoints.

use crate::checkpoint::write_atomic;
use crate::error::{Result, config_err};
use flate2::Compression;
use flate2::Crc;
use flate2::write::ZlibEncoder;
use std::io::Write;
use std::path::Path;

/// PNG bytes of an 8-bit grayscale image, `pixels` row-major `width × height`.
pub fn png_gray(width: usize, height: usize, pixels: &[u8]) -> Result<Vec<u8>> {
    if width == 0 || height == 0 || pixels.len() != width * height {
        return config_err(format!(
            "png: {width}×{height} image needs {} pixels, got {}",
            width.saturating_mul(height),
            pixels.len()
        ));
    }
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else {
        return config_err(format!("png: {width}×{height} is too large"));
    };
    let mut raw = Vec::with_capacity((width + 1) * height);
    for row in pixels.chunks(width) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    let io = |e: std::io::Error| crate::error::NnError::Config(format!("png: {e}"));
    z.write_all(&raw).map_err(io)?;
    let idat = z.finish().map_err(io)?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8 bits, grayscale, deflate, no filter, no interlace
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    for (kind, data) in [
        (b"IHDR", &ihdr[..]),
        (b"IDAT", &idat[..]),
        (b"IEND", &[][..]),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    Ok(out)
}

/// Tiles `n` single-channel images of `h × w` values (row-major, image after image) into a
/// grid of `cols` columns with a 2-pixel gap, mapping `lo..=hi` to black..white (values
/// outside are clamped). Returns (width, height, pixels).
pub fn grid(
    images: &[f32],
    n: usize,
    h: usize,
    w: usize,
    cols: usize,
    (lo, hi): (f32, f32),
) -> Result<(usize, usize, Vec<u8>)> {
    let range_ok = (hi - lo).is_finite() && hi > lo;
    if n == 0 || cols == 0 || h == 0 || w == 0 || images.len() != n * h * w || !range_ok {
        return config_err(format!(
            "grid: {n} images of {h}×{w} in {cols} columns from {} values, range {lo}..{hi}",
            images.len()
        ));
    }
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut px = vec![0u8; gw * gh];
    for (k, img) in images.chunks(h * w).enumerate() {
        let (r0, c0) = (gap + (k / cols) * (h + gap), gap + (k % cols) * (w + gap));
        for i in 0..h {
            for j in 0..w {
                let v = ((img[i * w + j] - lo) / (hi - lo)).clamp(0.0, 1.0);
                px[(r0 + i) * gw + c0 + j] = (v * 255.0).round() as u8;
            }
        }
    }
    Ok((gw, gh, px))
}

/// Writes `pixels` as a grayscale PNG at `path` (atomically).
pub fn save_png(path: &Path, width: usize, height: usize, pixels: &[u8]) -> Result<()> {
    write_atomic(path, &png_gray(width, height, pixels)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    #[test]
    fn png_chunks_decode_back_to_the_pixels() {
        let px: Vec<u8> = (0..12).map(|i| (i * 20) as u8).collect();
        let png = png_gray(4, 3, &px).unwrap();
        assert_eq!(&png[..8], &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        // Walk the chunks, checking each CRC, and inflate IDAT.
        let (mut at, mut idat, mut kinds) = (8, Vec::new(), Vec::new());
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let data = &png[at + 8..at + 8 + len];
            let mut crc = Crc::new();
            crc.update(kind);
            crc.update(data);
            let stored = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            assert_eq!(crc.sum(), stored);
            if kind == b"IDAT" {
                idat.extend_from_slice(data);
            }
            kinds.push(String::from_utf8(kind.to_vec()).unwrap());
            at += 12 + len;
        }
        assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
        let mut raw = Vec::new();
        ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
        let rows: Vec<&[u8]> = raw.chunks(5).collect();
        assert_eq!(rows.len(), 3);
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(row[0], 0);
            assert_eq!(&row[1..], &px[r * 4..r * 4 + 4]);
        }
        assert!(png_gray(4, 3, &px[..11]).is_err());
    }

    #[test]
    fn grid_places_and_scales_images() {
        let imgs = [-1.0f32, 1.0, 0.0, 1.0, /* second */ 1.0, 1.0, 1.0, 1.0];
        let (w, h, px) = grid(&imgs, 2, 2, 2, 2, (-1.0, 1.0)).unwrap();
        assert_eq!((w, h), (2 * 4 + 2, 4 + 2));
        assert_eq!(px[2 * w + 2], 0); // −1 → black
        assert_eq!(px[2 * w + 3], 255);
        assert_eq!(px[3 * w + 2], 128); // 0 → mid grey
        assert_eq!(px[2 * w + 6], 255); // second image
        assert_eq!(px[0], 0); // gap
    }
}
