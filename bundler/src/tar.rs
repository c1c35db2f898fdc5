//! The one-member tar stream inside a bundle: the GNU header euca2ools (Python 2 `tarfile`)
//! writes, and a streaming reader that accepts exactly one regular file and nothing more.

use std::io::Write;

use crate::error::{Error, Result};

/// Tar block size.
pub const BLOCK: u64 = 512;
/// Tar record size (20 blocks): the stream is zero-padded to a multiple of it.
pub const RECORD: u64 = 10240;

/// Writes `value` as zero-padded octal, NUL-terminated, into `field` — or in GNU base-256
/// when it does not fit (images of 8 GiB and more), as Python's tarfile does in GNU format.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits < 22 && value >= 1u64 << (3 * digits) {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
        return;
    }
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// Builds the header block(s) for the single member: a GNU `././@LongLink` block first when
/// the name is longer than 100 bytes, then the regular-file header (mode 0644, uid/gid 0,
/// mtime 0, empty user and group names, GNU magic).
pub fn header(name: &str, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let name = name.as_bytes();
    if name.len() > 100 {
        let mut long = name.to_vec();
        long.push(0);
        out.extend_from_slice(&block(
            "././@LongLink",
            long.len() as u64,
            b'L',
            0,
            &name[..100],
        ));
        out.extend_from_slice(&long);
        out.resize(out.len().next_multiple_of(BLOCK as usize), 0);
        out.extend_from_slice(&block("", size, b'0', 0o644, &name[..100]));
    } else {
        out.extend_from_slice(&block("", size, b'0', 0o644, name));
    }
    out
}

fn block(long_name: &str, size: u64, typeflag: u8, mode: u64, name: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    let name = if long_name.is_empty() {
        name
    } else {
        long_name.as_bytes()
    };
    b[..name.len()].copy_from_slice(name);
    put_number(&mut b[100..108], mode);
    put_number(&mut b[108..116], 0);
    put_number(&mut b[116..124], 0);
    put_number(&mut b[124..136], size);
    put_number(&mut b[136..148], 0);
    b[148..156].fill(b' ');
    b[156] = typeflag;
    b[257..265].copy_from_slice(b"ustar  \0");
    // devmajor/devminor stay NUL: Python 2's tarfile leaves them empty for regular files.
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    b
}

/// Length of the whole tar stream for a member of `size` bytes with header bytes `header`.
pub fn stream_len(header_len: u64, size: u64) -> u64 {
    (header_len + size.next_multiple_of(BLOCK) + 2 * BLOCK).next_multiple_of(RECORD)
}

fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256: big-endian in the remaining bytes; refuse negatives and overflow.
        if field[0] != 0x80 {
            return None;
        }
        let mut v: u64 = 0;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

fn checksum_ok(b: &[u8; 512]) -> bool {
    let Some(stored) = parse_number(&b[148..156]) else {
        return false;
    };
    let unsigned: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(x)
            }
        })
        .sum();
    let signed: i64 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(x as i8)
            }
        })
        .sum();
    stored == unsigned || i64::try_from(stored).ok() == Some(signed)
}

#[derive(Debug)]
enum State {
    /// Collecting a header block.
    Header,
    /// Skipping the data of a GNU long-name or PAX header (and reading PAX `size`).
    Extension { remaining: u64, pax: bool },
    /// Copying the member's data out.
    Data { remaining: u64 },
    /// Skipping the member's padding to a block boundary.
    Padding { remaining: u64 },
    /// After the member: only zero bytes, and not too many.
    Trailer { allowed: u64 },
}

/// A push-style reader of the bundle's tar stream: fed decompressed bytes, it writes the one
/// member's data to the sink and refuses anything else (a second member, a member bigger than
/// the manifest's size, data after the end) as soon as the bytes show it.
pub struct TarReader<W: Write> {
    sink: W,
    expected_size: u64,
    state: State,
    block: Vec<u8>,
    pax_data: Vec<u8>,
    pax_size: Option<u64>,
    member_seen: bool,
    member_size: u64,
    written: u64,
}

impl<W: Write> TarReader<W> {
    /// A reader that expects one member of `expected_size` bytes and writes it to `sink`.
    pub fn new(sink: W, expected_size: u64) -> Self {
        TarReader {
            sink,
            expected_size,
            state: State::Header,
            block: Vec::with_capacity(512),
            pax_data: Vec::new(),
            pax_size: None,
            member_seen: false,
            member_size: 0,
            written: 0,
        }
    }

    /// The sink, for the caller to finish with.
    pub fn into_inner(self) -> W {
        self.sink
    }

    /// Bytes of member data written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Feeds decompressed bytes.
    pub fn push(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (512 - self.block.len()).min(data.len());
                    self.block.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.block.len() == 512 {
                        self.on_header()?;
                        self.block.clear();
                    }
                }
                State::Extension { remaining, pax } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    if *pax || self.pax_data.len() < 4096 {
                        self.pax_data.extend_from_slice(&data[..take]);
                    }
                    *remaining -= take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        if *pax {
                            self.pax_size = pax_size(&self.pax_data)?;
                        }
                        self.pax_data.clear();
                        self.state = State::Header;
                    }
                }
                State::Data { remaining } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    self.sink
                        .write_all(&data[..take])
                        .map_err(|e| Error::io("writing the image", e))?;
                    *remaining -= take as u64;
                    self.written += take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        let pad = self.member_size.next_multiple_of(BLOCK) - self.member_size;
                        self.state = State::Padding { remaining: pad };
                    }
                }
                State::Padding { remaining } => {
                    let take = (*remaining).min(data.len() as u64) as usize;
                    *remaining -= take as u64;
                    data = &data[take..];
                    if *remaining == 0 {
                        // End blocks plus at most one record of padding: no room for a bomb.
                        self.state = State::Trailer {
                            allowed: 2 * BLOCK + RECORD,
                        };
                    }
                }
                State::Trailer { allowed } => {
                    let take = (*allowed).min(data.len() as u64) as usize;
                    // A non-zero block here is a second member's header (or garbage).
                    if data[..take].iter().any(|&b| b != 0) {
                        return Err(Error::MultipleMembers);
                    }
                    if take < data.len() {
                        return Err(Error::TrailingData);
                    }
                    *allowed -= take as u64;
                    data = &data[take..];
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> Result<()> {
        let b: &[u8; 512] = self
            .block
            .as_slice()
            .try_into()
            .map_err(|_| Error::Tar("a short header block"))?;
        if b.iter().all(|&x| x == 0) {
            return Err(if self.member_seen {
                Error::MultipleMembers
            } else {
                Error::Tar("the archive holds no member")
            });
        }
        if !checksum_ok(b) {
            return Err(Error::Tar("a header checksum is wrong"));
        }
        if &b[257..262] != b"ustar" {
            return Err(Error::Tar("a header has neither ustar nor GNU magic"));
        }
        let size = parse_number(&b[124..136]).ok_or(Error::Tar("a header size is invalid"))?;
        match b[156] {
            b'0' | 0 => {
                let size = self.pax_size.take().unwrap_or(size);
                if size > self.expected_size {
                    return Err(Error::ImageSize {
                        expected: self.expected_size,
                        actual: size,
                    });
                }
                self.member_seen = true;
                self.member_size = size;
                self.state = if size == 0 {
                    State::Trailer {
                        allowed: 2 * BLOCK + RECORD,
                    }
                } else {
                    State::Data { remaining: size }
                };
                Ok(())
            }
            b'L' | b'x' => {
                if size > 1 << 20 {
                    return Err(Error::Tar("an extended header is too large"));
                }
                let padded = size.next_multiple_of(BLOCK);
                self.state = if padded == 0 {
                    State::Header
                } else {
                    State::Extension {
                        remaining: padded,
                        pax: b[156] == b'x',
                    }
                };
                Ok(())
            }
            _ => Err(Error::Tar("the member is not a regular file")),
        }
    }

    /// Checks the end: one member of exactly the expected size was read in full.
    pub fn finish(&self) -> Result<()> {
        match self.state {
            State::Trailer { .. } if self.member_seen => {
                if self.member_size != self.expected_size {
                    return Err(Error::ImageSize {
                        expected: self.expected_size,
                        actual: self.member_size,
                    });
                }
                Ok(())
            }
            _ if !self.member_seen => Err(Error::Tar("the archive holds no member")),
            _ => Err(Error::Tar("the archive ends in the middle of the member")),
        }
    }
}

/// Reads the `size` record of a PAX extended header, if any.
fn pax_size(data: &[u8]) -> Result<Option<u64>> {
    let mut rest = data;
    let mut size = None;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(Error::Tar("a PAX record is malformed"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&l| l > sp && l <= rest.len())
            .ok_or(Error::Tar("a PAX record is malformed"))?;
        let record = &rest[sp + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            size = Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or(Error::Tar("a PAX size is malformed"))?,
            );
        }
        rest = &rest[len..];
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(name: &str, data: &[u8]) -> Vec<u8> {
        let mut t = header(name, data.len() as u64);
        t.extend_from_slice(data);
        let len = stream_len(
            header(name, data.len() as u64).len() as u64,
            data.len() as u64,
        );
        t.resize(len as usize, 0);
        t
    }

    #[test]
    fn header_matches_python_gnu_layout() {
        let h = header("image.img", 26214400);
        assert_eq!(h.len(), 512);
        assert_eq!(&h[..9], b"image.img");
        assert_eq!(&h[100..108], b"0000644\0");
        assert_eq!(&h[124..136], b"00144000000\0");
        assert_eq!(&h[257..265], b"ustar  \0");
        assert_eq!(stream_len(512, 26214400), 26224640);
        assert!(checksum_ok(h.as_slice().try_into().unwrap()));
    }

    #[test]
    fn big_sizes_use_base256_and_read_back() {
        let h = header("x", 10 << 30);
        assert_eq!(h[124], 0x80);
        assert_eq!(parse_number(&h[124..136]), Some(10 << 30));
    }

    #[test]
    fn reads_one_member_in_small_pieces() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let t = archive("a-very-long-name-".repeat(8).as_str(), &data);
        let mut r = TarReader::new(Vec::new(), 3000);
        for c in t.chunks(7) {
            r.push(c).unwrap();
        }
        r.finish().unwrap();
        assert_eq!(r.into_inner(), data);
    }

    #[test]
    fn refuses_two_members_bombs_and_short_ones() {
        let mut two = archive("a", b"hello");
        two.truncate(1024);
        two.extend_from_slice(&archive("b", b"world"));
        let mut r = TarReader::new(Vec::new(), 5);
        assert!(matches!(r.push(&two), Err(Error::MultipleMembers)));

        let mut r = TarReader::new(Vec::new(), 4);
        assert!(matches!(
            r.push(&archive("a", b"hello")),
            Err(Error::ImageSize { .. })
        ));

        let mut r = TarReader::new(Vec::new(), 5);
        let mut long = archive("a", b"hello");
        long.extend_from_slice(&[0u8; 20000]);
        assert!(matches!(r.push(&long), Err(Error::TrailingData)));

        let mut r = TarReader::new(Vec::new(), 6);
        r.push(&archive("a", b"hello")).unwrap();
        assert!(matches!(r.finish(), Err(Error::ImageSize { .. })));

        let mut r = TarReader::new(Vec::new(), 5);
        r.push(&archive("a", b"hello")[..514]).unwrap();
        assert!(r.finish().is_err());

        let mut bad = archive("a", b"hello");
        bad[0] = b'b';
        assert!(TarReader::new(Vec::new(), 5).push(&bad).is_err());
    }
}
