//! Parallel gzip, pigz style: the stream is cut into chunks that are deflated independently on
//! all cores (each non-final chunk ends with a sync flush, so the pieces concatenate into one
//! valid deflate stream), and the CRC-32s are combined. The result is a single-member gzip
//! file that every decoder reads (`gzip -d`, Python's `zlib`/`gzip`, euca-unbundle).

use std::io;

use flate2::{Compress, Compression, FlushCompress, Status};

/// The gzip header euca2ools' `gzip -c` writes on a pipe: no name, MTIME 0, OS Unix.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03];

/// A chunk after deflate: its compressed bytes, the CRC-32 state of its input, its input size.
pub struct Deflated {
    /// Raw deflate bytes, ending on a byte boundary (sync flush) or with the final block.
    pub bytes: Vec<u8>,
    /// CRC-32 of the chunk's uncompressed bytes, to be combined in order.
    pub crc: crc32fast::Hasher,
}

/// A reusable per-thread deflater.
pub struct ChunkDeflater {
    compress: Compress,
}

impl ChunkDeflater {
    /// A deflater at `level` (0–9) producing raw deflate (the gzip framing is added around it).
    pub fn new(level: u32) -> Self {
        ChunkDeflater {
            compress: Compress::new(Compression::new(level.min(9)), false),
        }
    }

    /// Deflates one chunk independently of the others; `last` ends the deflate stream.
    ///
    /// Sub-blocks that look incompressible (random or already compressed data, by their byte
    /// entropy) are written as stored blocks: deflating them would cost time and grow them.
    pub fn deflate(&mut self, data: &[u8], last: bool) -> io::Result<Deflated> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 1024);
        let mut pending = 0;
        let mut at = 0;
        for block in data.chunks(SUB_BLOCK) {
            if looks_incompressible(block) {
                if at > pending {
                    self.run(&data[pending..at], false, &mut out)?;
                }
                stored(&mut out, block);
                pending = at + block.len();
            }
            at += block.len();
        }
        if last || pending < data.len() {
            self.run(&data[pending..], last, &mut out)?;
        }
        Ok(Deflated { bytes: out, crc })
    }

    /// Deflates `data` with a fresh dictionary, ending byte-aligned (sync flush) or final.
    fn run(&mut self, data: &[u8], last: bool, out: &mut Vec<u8>) -> io::Result<()> {
        self.compress.reset();
        let flush = if last {
            FlushCompress::Finish
        } else {
            FlushCompress::Sync
        };
        out.reserve(data.len() + data.len() / 64 + 1024);
        loop {
            let consumed = self.compress.total_in() as usize;
            let status = self
                .compress
                .compress_vec(&data[consumed..], out, flush)
                .map_err(io::Error::other)?;
            let all_in = self.compress.total_in() as usize == data.len();
            let room_left = out.len() < out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if !last && all_in && room_left => return Ok(()),
                _ => out.reserve(out.capacity().max(64 * 1024)),
            }
        }
    }
}

/// Granularity of the stored-or-deflated decision.
const SUB_BLOCK: usize = 64 * 1024;

/// Order-0 entropy above 7.95 bits a byte: deflate would not gain anything worth its time.
fn looks_incompressible(block: &[u8]) -> bool {
    if block.len() < 4096 {
        return false;
    }
    let mut counts = [0u32; 256];
    for &b in block {
        counts[usize::from(b)] += 1;
    }
    let n = block.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 7.95
}

/// Appends non-final stored blocks holding `data`; the output must be byte-aligned.
fn stored(out: &mut Vec<u8>, data: &[u8]) {
    for piece in data.chunks(65535) {
        let len = piece.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
}

/// The 8-byte gzip trailer: CRC-32 and input size modulo 2^32, little-endian.
pub fn trailer(crc: &crc32fast::Hasher, total_in: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc.clone().finalize().to_le_bytes());
    t[4..].copy_from_slice(&(total_in as u32).to_le_bytes());
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn chunks_concatenate_into_one_gzip_member() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 977) as u8)
            .collect();
        let mut d = ChunkDeflater::new(1);
        let mut gz = HEADER.to_vec();
        let mut crc = crc32fast::Hasher::new();
        let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
        for (i, c) in chunks.iter().enumerate() {
            let out = d.deflate(c, i + 1 == chunks.len()).unwrap();
            gz.extend_from_slice(&out.bytes);
            crc.combine(&out.crc);
        }
        gz.extend_from_slice(&trailer(&crc, data.len() as u64));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
