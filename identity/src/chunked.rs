//! The `aws-chunked` content encoding: S3 uploads whose body is a series of
//! `hex-size[;chunk-signature=sig]\r\n<data>\r\n` chunks ending with a zero-size chunk and,
//! optionally, trailing headers (`x-amz-checksum-crc32:...`). Signed streams chain an HMAC
//! through every chunk (and the trailer) from the request's seed signature, so a body cannot
//! be cut, reordered or altered without the key.

use bytes::{Bytes, BytesMut};
use ring::{digest, hmac};

use crate::canon::sha256_hex;
use crate::AuthError;

/// The longest chunk-header or trailer line accepted; real ones are under 200 bytes.
const MAX_LINE: usize = 4096;
/// At most this many trailing headers.
const MAX_TRAILERS: usize = 16;
/// SHA-256 of nothing, part of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a signed stream needs to check its chunks: the request's signing key, timestamp and
/// scope, and the seed signature (the request's own).
pub(crate) struct ChunkSigning {
    pub key: [u8; 32],
    pub timestamp: String,
    pub scope: String,
    pub seed: [u8; 32],
    pub trailer: bool,
}

#[allow(clippy::large_enum_variant)] // lives boxed inside `AwsChunkedDecoder`
enum Mode {
    Signed {
        key: hmac::Key,
        timestamp: String,
        scope: String,
        previous: [u8; 32],
        trailer: bool,
    },
    Unsigned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading `hex-size[;ext]\r\n`.
    Header,
    /// Copying `remaining` data bytes.
    Data,
    /// Expecting the `\r\n` after a chunk's data.
    DataEnd,
    /// After the zero-size chunk: trailer lines until an empty line.
    Trailers,
    /// The blank line after the trailers was seen.
    Done,
}

/// Removes aws-chunked framing, verifying chunk (and trailer) signatures when signed.
///
/// Feed the raw body with [`push`](Self::push) as it arrives and store what it returns; the
/// bytes of a chunk are returned before the chunk's signature (which follows its data) has
/// been checked, so nothing may become visible until [`finish`](Self::finish) succeeds.
pub struct AwsChunkedDecoder {
    // Boxed: the hashing and HMAC state is a few hundred bytes, kept out of `Payload`.
    inner: Box<Decoder>,
}

impl std::fmt::Debug for AwsChunkedDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl AwsChunkedDecoder {
    /// A decoder for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)`.
    pub(crate) fn signed(signing: ChunkSigning, expected_decoded: Option<u64>) -> Self {
        AwsChunkedDecoder {
            inner: Box::new(Decoder::signed(signing, expected_decoded)),
        }
    }

    /// A decoder for `STREAMING-UNSIGNED-PAYLOAD-TRAILER`.
    pub(crate) fn unsigned(expected_decoded: Option<u64>) -> Self {
        AwsChunkedDecoder {
            inner: Box::new(Decoder::unsigned(expected_decoded)),
        }
    }

    /// Whether chunk signatures are being verified (as opposed to framing only).
    pub fn is_signed(&self) -> bool {
        self.inner.is_signed()
    }

    /// Feeds raw body bytes; returns decoded payload bytes available so far.
    pub fn push(&mut self, input: &[u8]) -> Result<Bytes, AuthError> {
        self.inner.push(input)
    }

    /// After the last input: checks the final chunk was seen; returns the trailers
    /// (lowercase name, value), e.g. ("x-amz-checksum-crc32", "base64").
    pub fn finish(self) -> Result<Vec<(String, String)>, AuthError> {
        self.inner.finish()
    }
}

/// The decoder's state machine.
struct Decoder {
    mode: Mode,
    state: State,
    line: Vec<u8>,
    remaining: u64,
    chunk_hash: Option<digest::Context>,
    chunk_signature: Option<[u8; 32]>,
    decoded: u64,
    expected_decoded: Option<u64>,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsChunkedDecoder")
            .field("signed", &matches!(self.mode, Mode::Signed { .. }))
            .field("state", &self.state)
            .field("decoded", &self.decoded)
            .field("expected_decoded", &self.expected_decoded)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    fn signed(signing: ChunkSigning, expected_decoded: Option<u64>) -> Self {
        let mode = Mode::Signed {
            key: hmac::Key::new(hmac::HMAC_SHA256, &signing.key),
            timestamp: signing.timestamp,
            scope: signing.scope,
            previous: signing.seed,
            trailer: signing.trailer,
        };
        Self::new(mode, expected_decoded)
    }

    fn unsigned(expected_decoded: Option<u64>) -> Self {
        Self::new(Mode::Unsigned, expected_decoded)
    }

    fn new(mode: Mode, expected_decoded: Option<u64>) -> Self {
        Decoder {
            mode,
            state: State::Header,
            line: Vec::new(),
            remaining: 0,
            chunk_hash: None,
            chunk_signature: None,
            decoded: 0,
            expected_decoded,
            trailers: Vec::new(),
            trailer_signature: None,
        }
    }

    fn is_signed(&self) -> bool {
        matches!(self.mode, Mode::Signed { .. })
    }

    fn push(&mut self, input: &[u8]) -> Result<Bytes, AuthError> {
        let mut out = BytesMut::new();
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Header => {
                    if let Some(line) = self.take_line(input, &mut pos)? {
                        self.start_chunk(&line)?;
                    }
                }
                State::Data => {
                    let available = input.len() - pos;
                    let n = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                    let data = &input[pos..pos + n];
                    if let Some(ctx) = self.chunk_hash.as_mut() {
                        ctx.update(data);
                    }
                    out.extend_from_slice(data);
                    pos += n;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataEnd;
                    }
                }
                State::DataEnd => {
                    if let Some(line) = self.take_line(input, &mut pos)? {
                        if !line.is_empty() {
                            return Err(AuthError::InvalidChunk(
                                "a chunk is longer than its declared size".into(),
                            ));
                        }
                        let hash = self.chunk_hash.take().map(digest::Context::finish);
                        self.check_chunk_signature(hash.as_ref().map(AsRef::as_ref))?;
                        self.state = State::Header;
                    }
                }
                State::Trailers => {
                    if let Some(line) = self.take_line(input, &mut pos)? {
                        if line.is_empty() {
                            self.end_trailers()?;
                        } else {
                            self.add_trailer(&line)?;
                        }
                    }
                }
                State::Done => {
                    // Some clients end with an extra CRLF; anything else is an error.
                    if input[pos..].iter().all(|b| *b == b'\r' || *b == b'\n') {
                        pos = input.len();
                    } else {
                        return Err(AuthError::InvalidChunk(
                            "data follows the final chunk".into(),
                        ));
                    }
                }
            }
        }
        Ok(out.freeze())
    }

    fn finish(mut self) -> Result<Vec<(String, String)>, AuthError> {
        if self.state == State::Trailers && self.line.is_empty() {
            // The stream ended after complete trailer lines without the closing blank line.
            self.end_trailers()?;
        }
        if self.state != State::Done {
            return Err(AuthError::IncompleteBody);
        }
        if let Some(expected) = self.expected_decoded {
            if expected != self.decoded {
                return Err(AuthError::IncompleteBody);
            }
        }
        Ok(self.trailers)
    }

    /// Accumulates bytes up to `\r\n`; returns the line (without it) once complete.
    fn take_line(&mut self, input: &[u8], pos: &mut usize) -> Result<Option<Vec<u8>>, AuthError> {
        while *pos < input.len() {
            let b = input[*pos];
            *pos += 1;
            if b == b'\n' && self.line.last() == Some(&b'\r') {
                self.line.pop();
                return Ok(Some(std::mem::take(&mut self.line)));
            }
            self.line.push(b);
            if self.line.len() > MAX_LINE {
                return Err(AuthError::InvalidChunk(
                    "a chunk header or trailer line is too long".into(),
                ));
            }
        }
        Ok(None)
    }

    fn start_chunk(&mut self, line: &[u8]) -> Result<(), AuthError> {
        let line = std::str::from_utf8(line)
            .map_err(|_| AuthError::InvalidChunk("a chunk header is not text".into()))?;
        let mut parts = line.split(';');
        let size_text = parts.next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 16 {
            return Err(AuthError::InvalidChunk(format!(
                "invalid chunk size '{size_text}'"
            )));
        }
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| AuthError::InvalidChunk(format!("invalid chunk size '{size_text}'")))?;
        let mut signature = None;
        for ext in parts {
            if let Some(v) = ext.trim().strip_prefix("chunk-signature=") {
                let mut sig = [0u8; 32];
                hex::decode_to_slice(v.trim(), &mut sig)
                    .map_err(|_| AuthError::SignatureDoesNotMatch)?;
                signature = Some(sig);
            }
        }
        if self.is_signed() && signature.is_none() {
            return Err(AuthError::InvalidChunk(
                "a chunk has no chunk-signature".into(),
            ));
        }
        self.decoded = self.decoded.saturating_add(size);
        if let Some(expected) = self.expected_decoded {
            if self.decoded > expected {
                return Err(AuthError::InvalidChunk(
                    "the chunks hold more data than x-amz-decoded-content-length".into(),
                ));
            }
        }
        self.chunk_signature = signature;
        if size == 0 {
            self.check_chunk_signature(None)?;
            self.state = State::Trailers;
        } else {
            self.remaining = size;
            self.chunk_hash = self
                .is_signed()
                .then(|| digest::Context::new(&digest::SHA256));
            self.state = State::Data;
        }
        Ok(())
    }

    /// Checks the current chunk's signature over its data hash (`None`: the empty chunk) and
    /// advances the chain.
    fn check_chunk_signature(&mut self, data_hash: Option<&[u8]>) -> Result<(), AuthError> {
        let Mode::Signed {
            key,
            timestamp,
            scope,
            previous,
            ..
        } = &mut self.mode
        else {
            return Ok(());
        };
        let provided = self
            .chunk_signature
            .take()
            .ok_or(AuthError::SignatureDoesNotMatch)?;
        let data_hex = data_hash.map_or_else(|| EMPTY_SHA256.to_owned(), hex::encode);
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{timestamp}\n{scope}\n{}\n{EMPTY_SHA256}\n{data_hex}",
            hex::encode(*previous)
        );
        hmac::verify(key, sts.as_bytes(), &provided)
            .map_err(|_| AuthError::SignatureDoesNotMatch)?;
        *previous = provided;
        Ok(())
    }

    fn add_trailer(&mut self, line: &[u8]) -> Result<(), AuthError> {
        let line = std::str::from_utf8(line)
            .map_err(|_| AuthError::InvalidChunk("a trailer is not text".into()))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| AuthError::InvalidChunk(format!("the trailer '{line}' has no ':'")))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_owned();
        match &self.mode {
            Mode::Signed { trailer: false, .. } => Err(AuthError::InvalidChunk(
                "trailers were sent but not announced".into(),
            )),
            Mode::Signed { trailer: true, .. } if name == "x-amz-trailer-signature" => {
                if self.trailer_signature.is_some() {
                    return Err(AuthError::InvalidChunk(
                        "the trailer signature was sent twice".into(),
                    ));
                }
                self.trailer_signature = Some(hex::decode(&value).unwrap_or_default());
                Ok(())
            }
            _ => {
                if self.trailer_signature.is_some() {
                    return Err(AuthError::InvalidChunk(
                        "a trailer follows the trailer signature".into(),
                    ));
                }
                if self.trailers.len() >= MAX_TRAILERS {
                    return Err(AuthError::InvalidChunk("too many trailers".into()));
                }
                self.trailers.push((name, value));
                Ok(())
            }
        }
    }

    fn end_trailers(&mut self) -> Result<(), AuthError> {
        if let Mode::Signed {
            key,
            timestamp,
            scope,
            previous,
            trailer: true,
        } = &self.mode
        {
            let provided = self.trailer_signature.as_deref().ok_or_else(|| {
                AuthError::InvalidChunk("the x-amz-trailer-signature trailer is missing".into())
            })?;
            let mut canonical = String::new();
            for (name, value) in &self.trailers {
                canonical.push_str(name);
                canonical.push(':');
                canonical.push_str(value);
                canonical.push('\n');
            }
            let sts = format!(
                "AWS4-HMAC-SHA256-TRAILER\n{timestamp}\n{scope}\n{}\n{}",
                hex::encode(previous),
                sha256_hex(canonical.as_bytes())
            );
            hmac::verify(key, sts.as_bytes(), provided)
                .map_err(|_| AuthError::SignatureDoesNotMatch)?;
        }
        self.state = State::Done;
        Ok(())
    }
}
