//! Object bytes: the directory layout, staging a body into a temp file while hashing it,
//! installing a staged file under its final name, and streaming files back; or the same in a
//! Ceph RADOS pool ([`super::rados`]).
//!
//! Data files are named by a random [`FileId`], never by anything a client chose, and fanned
//! out into 256 subdirectories of `data/` so that no directory grows huge. A file reaches
//! `data/` only complete and fsynced (temp file → fsync → rename → fsync of the directory).
//! In RADOS a file is written under its final name, stripe by stripe, and sealed with its
//! size; until its record is committed it is removed like a temp file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::digest::{self, ExtraHasher};
use super::rados::{RadosData, ReadLease, STRIPE};
use super::{internal, BodyStream, DigestRequest, Digests, Staged, StagedData, StoreError};

/// Bodies up to this size stay in memory and are stored inside their RocksDB record: one
/// synced WAL write (shared with concurrent writers) instead of a file, its fsync and its
/// directory's fsync.
pub(super) const INLINE_MAX: usize = 16 << 10;

/// Chunks smaller than this are gathered into buffers of [`GATHER`] bytes before they go to
/// the hashing and writing threads, so that per-chunk hand-over costs stay small.
const GATHER_BELOW: usize = 64 << 10;
const GATHER: usize = 256 << 10;

/// Chunks in flight to each of the hashing and writing threads (bounded memory).
const DEPTH: usize = 8;

/// Large bodies streamed into files at once. Each holds up to [`THREADS_PER_UPLOAD`]
/// blocking threads while its client sends; more uploads wait for a place before their body
/// is read, so that many slow uploads cannot take every blocking thread from the reads and
/// database writes of other requests.
pub const MAX_UPLOADS: usize = 64;

/// Blocking threads one streamed upload holds: the writer, MD5, and an extra checksum.
pub const THREADS_PER_UPLOAD: usize = 3;

/// A very large body is fdatasync'ed every this many bytes while it streams in, so that one
/// multi-GB upload does not pile up dirty pages for a single huge fsync at the end. Kept
/// coarse: on ext4 each fdatasync of a growing file is a journal commit, and syncing every
/// 16 MiB measured slower and costlier in CPU than letting the kernel write back.
const SYNC_EVERY: u64 = 256 << 20;

/// Reads are streamed in chunks of this size.
pub(super) const READ_CHUNK: u64 = 1 << 20;

/// The name of a data file: 8 random bytes, then the epoch of the open that created it
/// (big-endian), so that the orphan sweep at open only examines the last run's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FileId(pub [u8; 16]);

impl FileId {
    /// A fresh id for a file created during `epoch`.
    pub fn new(epoch: u64) -> FileId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rand::random::<[u8; 8]>());
        id[8..].copy_from_slice(&epoch.to_be_bytes());
        FileId(id)
    }

    /// The epoch of the open that created the file.
    pub fn epoch(&self) -> u64 {
        let mut e = [0u8; 8];
        e.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(e)
    }

    /// The file name: 32 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a file name made by [`FileId::hex`].
    pub fn parse(name: &str) -> Option<FileId> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(name, &mut id).ok()?;
        Some(FileId(id))
    }
}

/// Where the store's data files are: the directories under its root, or a RADOS pool.
pub(super) struct Layout {
    engine: Engine,
    /// Places for streamed uploads ([`MAX_UPLOADS`]).
    uploads: Arc<tokio::sync::Semaphore>,
}

enum Engine {
    Files { tmp: PathBuf, data: PathBuf },
    Rados(Arc<RadosData>),
}

impl Layout {
    /// Creates `tmp/` and `data/00..ff` under `root` if missing.
    pub fn create(root: &Path) -> io::Result<Layout> {
        let (tmp, data) = (root.join("tmp"), root.join("data"));
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&data)?;
        for i in 0..=255u8 {
            let sub = data.join(hex::encode([i]));
            if !sub.is_dir() {
                std::fs::create_dir(&sub)?;
            }
        }
        // Made durable once here so that installing a file needs only its subdirectory's fsync.
        fsync_dir(&data)?;
        fsync_dir(root)?;
        Ok(Layout {
            engine: Engine::Files { tmp, data },
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        })
    }

    /// Data files in a RADOS pool.
    pub fn rados(data: RadosData) -> Layout {
        Layout {
            engine: Engine::Rados(Arc::new(data)),
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
        }
    }

    /// Where a complete file lives (files only).
    #[cfg(test)]
    pub fn data_path(&self, id: FileId) -> PathBuf {
        match &self.engine {
            Engine::Files { data, .. } => file_path(data, id),
            Engine::Rados(_) => PathBuf::new(),
        }
    }

    /// Removes everything in `tmp/`: bodies staged but never committed before a crash. (In
    /// RADOS they are the previous run's orphans, found by [`Layout::files_of_epoch`].)
    pub fn clear_tmp(&self) -> io::Result<usize> {
        let Engine::Files { tmp, .. } = &self.engine else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in std::fs::read_dir(tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Every data file created during `epoch`.
    pub fn files_of_epoch(&self, epoch: u64) -> io::Result<Vec<FileId>> {
        let data = match &self.engine {
            Engine::Files { data, .. } => data,
            Engine::Rados(rados) => return rados.files_of_epoch(epoch),
        };
        let mut out = Vec::new();
        for i in 0..=255u8 {
            for entry in std::fs::read_dir(data.join(hex::encode([i])))? {
                let entry = entry?;
                let id = entry.file_name().to_str().and_then(FileId::parse);
                if let Some(id) = id.filter(|id| id.epoch() == epoch) {
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Opens a data file for reading.
    pub fn open(&self, id: FileId) -> io::Result<Source> {
        match &self.engine {
            Engine::Files { data, .. } => {
                Ok(Source::File(Arc::new(File::open(file_path(data, id))?)))
            }
            Engine::Rados(rados) => Ok(Source::Rados(Arc::new(rados.open(id)?))),
        }
    }

    /// Unlinks a data file; a missing file is fine (the unlink already happened before a
    /// crash). Readers holding the file open keep reading it. Answers whether the file is
    /// gone now: in RADOS a file being read goes once its readers are done, so the caller
    /// keeps its record of the removal (its `pending` entry) until a later call.
    pub fn unlink(&self, id: FileId) -> io::Result<bool> {
        match &self.engine {
            Engine::Files { data, .. } => match std::fs::remove_file(file_path(data, id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(true),
            },
            Engine::Rados(rados) => rados.unlink(id),
        }
    }

    /// Moves a complete, fsynced temp file to its final name and makes the rename durable
    /// (in RADOS it is there already: it is only kept).
    pub fn install(&self, mut temp: TempFile) -> io::Result<FileId> {
        match &temp.place {
            Place::File(path) => {
                let Engine::Files { data, .. } = &self.engine else {
                    return Err(io::Error::other("a temp file of another engine"));
                };
                let dest = file_path(data, temp.id);
                std::fs::rename(path, &dest)?;
                temp.installed = true;
                if let Some(dir) = dest.parent() {
                    fsync_dir(dir)?;
                }
            }
            Place::Rados(_) => temp.installed = true,
        }
        Ok(temp.id)
    }

    /// Writes `data` into a fresh, fsynced temp file (a small part: parts are always files,
    /// because a completed upload references them in place).
    pub fn write_temp(&self, epoch: u64, data: &[u8]) -> io::Result<TempFile> {
        let id = FileId::new(epoch);
        match &self.engine {
            Engine::Files { tmp, .. } => {
                let temp = TempFile {
                    id,
                    place: Place::File(tmp.join(id.hex())),
                    installed: false,
                };
                let Place::File(path) = &temp.place else {
                    unreachable!("made as a file just above")
                };
                let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
                f.write_all(data)?;
                f.sync_data()?;
                Ok(temp)
            }
            Engine::Rados(rados) => {
                let temp = TempFile {
                    id,
                    place: Place::Rados(Arc::clone(rados)),
                    installed: false,
                };
                rados.write_all(id, data)?;
                Ok(temp)
            }
        }
    }
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Engine::Files { data, .. } => write!(f, "files in {}", data.display()),
            Engine::Rados(rados) => write!(f, "RADOS pool {}", rados.pool()),
        }
    }
}

/// `data/xx/<id>`.
fn file_path(data: &Path, id: FileId) -> PathBuf {
    let name = id.hex();
    data.join(&name[..2]).join(name)
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file in `tmp/` (or written to RADOS), removed when dropped unless installed.
pub(super) struct TempFile {
    /// The id it will have in `data/`.
    pub id: FileId,
    place: Place,
    installed: bool,
}

/// Where a temp file is.
enum Place {
    File(PathBuf),
    Rados(Arc<RadosData>),
}

impl std::fmt::Debug for TempFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TempFile({})", self.id.hex())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: whatever is left is removed at the next open.
            match &self.place {
                Place::File(path) => {
                    let _ = std::fs::remove_file(path);
                }
                Place::Rados(rados) => {
                    let (data, id) = (Arc::clone(rados), self.id);
                    rados.off_the_reactor(move || {
                        let _ = data.unlink(id);
                    });
                }
            }
        }
    }
}

// ---- staging ----

/// What the writing thread receives.
enum WriteMsg {
    Data(Bytes),
    /// The body is complete: fsync and hand the file over.
    Finish,
}

/// Streams a body into memory (small) or a temp file (large) while hashing it.
pub(super) async fn stage(
    layout: Arc<Layout>,
    epoch: u64,
    mut body: BodyStream,
    expected_len: Option<u64>,
    want: DigestRequest,
) -> Result<Staged, StoreError> {
    let mut size = 0u64;
    let mut head: Vec<Bytes> = Vec::new();
    // Gather up to INLINE_MAX in memory unless the announced length rules it out.
    if expected_len.is_none_or(|n| n <= INLINE_MAX as u64) {
        loop {
            match body.next().await {
                None => {
                    check_len(size, expected_len, true)?;
                    let data = concat(head);
                    let digests = digest::digest_all(&data, &want);
                    return Ok(Staged {
                        size,
                        digests,
                        data: StagedData::Inline(data),
                    });
                }
                Some(Err(e)) => return Err(StoreError::Body(e)),
                Some(Ok(chunk)) => {
                    size += chunk.len() as u64;
                    check_len(size, expected_len, false)?;
                    head.push(chunk);
                    if size > INLINE_MAX as u64 {
                        break;
                    }
                }
            }
        }
    }

    let place = layout
        .uploads
        .clone()
        .acquire_owned()
        .await
        .map_err(internal)?;
    let mut pipe = Pipeline::start(&layout, epoch, &want, place);
    for chunk in head {
        pipe.push(chunk).await?;
    }
    loop {
        match body.next().await {
            None => {
                check_len(size, expected_len, true)?;
                let (temp, digests) = pipe.finish().await?;
                return Ok(Staged {
                    size,
                    digests,
                    data: StagedData::File(temp),
                });
            }
            Some(Err(e)) => return Err(StoreError::Body(e)),
            Some(Ok(chunk)) => {
                size += chunk.len() as u64;
                check_len(size, expected_len, false)?;
                pipe.push(chunk).await?;
            }
        }
    }
}

/// `IncompleteBody` when the body went past the announced length, or ended short of it.
fn check_len(size: u64, expected: Option<u64>, ended: bool) -> Result<(), StoreError> {
    match expected {
        Some(n) if size > n || (ended && size != n) => Err(StoreError::IncompleteBody),
        _ => Ok(()),
    }
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out.freeze()
}

/// Where the writing thread puts a large body.
enum Sink {
    /// A temp file, fdatasync'ed every [`SYNC_EVERY`] bytes and at the end.
    File { file: File, unsynced: u64 },
    /// RADOS stripes, each written once full; sealed with the size at the end.
    Rados {
        rados: Arc<RadosData>,
        stripe: u64,
        buf: Vec<u8>,
        size: u64,
    },
}

impl Sink {
    fn open(temp: &TempFile) -> io::Result<Sink> {
        Ok(match &temp.place {
            Place::File(path) => Sink::File {
                file: OpenOptions::new().write(true).create_new(true).open(path)?,
                unsynced: 0,
            },
            Place::Rados(rados) => Sink::Rados {
                rados: Arc::clone(rados),
                stripe: 0,
                buf: Vec::with_capacity(STRIPE as usize),
                size: 0,
            },
        })
    }

    fn write(&mut self, id: FileId, mut data: &[u8]) -> io::Result<()> {
        match self {
            Sink::File { file, unsynced } => {
                file.write_all(data)?;
                *unsynced += data.len() as u64;
                if *unsynced >= SYNC_EVERY {
                    file.sync_data()?;
                    *unsynced = 0;
                }
            }
            Sink::Rados {
                rados,
                stripe,
                buf,
                size,
            } => {
                *size += data.len() as u64;
                while !data.is_empty() {
                    let room = STRIPE as usize - buf.len();
                    let (now, rest) = data.split_at(room.min(data.len()));
                    buf.extend_from_slice(now);
                    data = rest;
                    if buf.len() == STRIPE as usize {
                        rados.write_stripe(id, *stripe, buf)?;
                        buf.clear();
                        *stripe += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, id: FileId) -> io::Result<()> {
        match self {
            Sink::File { file, .. } => file.sync_data(),
            Sink::Rados {
                rados,
                stripe,
                buf,
                size,
            } => {
                if !buf.is_empty() || *stripe == 0 {
                    rados.write_stripe(id, *stripe, buf)?;
                }
                rados.seal(id, *size)
            }
        }
    }
}

/// The threads a large body flows through: one writes and fsyncs the temp file, one computes
/// MD5, one (when asked) SHA-256 and the checksum. Each gets every chunk (a `Bytes` clone,
/// no copy) through a bounded channel, so receiving, hashing and writing overlap.
///
/// Dropping the pipeline (an error, or the request future cancelled) closes the channels;
/// the writing thread then removes the temp file itself, so nothing is left behind even when
/// it had not created the file yet.
struct Pipeline {
    write_tx: mpsc::Sender<WriteMsg>,
    md5_tx: mpsc::Sender<Bytes>,
    extra_tx: Option<mpsc::Sender<Bytes>>,
    writer: JoinHandle<io::Result<Option<TempFile>>>,
    md5: JoinHandle<[u8; 16]>,
    extra: Option<JoinHandle<ExtraHasher>>,
    gather: BytesMut,
    /// Its place among the uploads streamed at once, given back when it ends.
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Pipeline {
    fn start(
        layout: &Layout,
        epoch: u64,
        want: &DigestRequest,
        upload: tokio::sync::OwnedSemaphorePermit,
    ) -> Pipeline {
        let id = FileId::new(epoch);
        let place = match &layout.engine {
            Engine::Files { tmp, .. } => Place::File(tmp.join(id.hex())),
            Engine::Rados(rados) => Place::Rados(Arc::clone(rados)),
        };
        let (write_tx, mut write_rx) = mpsc::channel::<WriteMsg>(DEPTH);
        let writer = tokio::task::spawn_blocking(move || {
            let temp = TempFile {
                id,
                place,
                installed: false,
            };
            let mut sink = Sink::open(&temp)?;
            while let Some(msg) = write_rx.blocking_recv() {
                match msg {
                    WriteMsg::Data(b) => sink.write(id, &b)?,
                    WriteMsg::Finish => {
                        sink.finish(id)?;
                        return Ok(Some(temp));
                    }
                }
            }
            Ok(None)
        });

        let (md5_tx, mut md5_rx) = mpsc::channel::<Bytes>(DEPTH);
        let md5 = tokio::task::spawn_blocking(move || {
            let mut h = digest::md5();
            while let Some(b) = md5_rx.blocking_recv() {
                md5::Digest::update(&mut h, &b);
            }
            digest::md5_finish(h)
        });

        let (extra_tx, extra) = match ExtraHasher::new(want) {
            None => (None, None),
            Some(mut h) => {
                let (tx, mut rx) = mpsc::channel::<Bytes>(DEPTH);
                let task = tokio::task::spawn_blocking(move || {
                    while let Some(b) = rx.blocking_recv() {
                        h.update(&b);
                    }
                    h
                });
                (Some(tx), Some(task))
            }
        };

        Pipeline {
            write_tx,
            md5_tx,
            extra_tx,
            writer,
            md5,
            extra,
            gather: BytesMut::new(),
            _place: upload,
        }
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        if self.gather.is_empty() && chunk.len() >= GATHER_BELOW {
            return self.send(chunk).await;
        }
        if self.gather.capacity() == 0 {
            self.gather.reserve(GATHER);
        }
        self.gather.extend_from_slice(&chunk);
        if self.gather.len() >= GATHER {
            let full = std::mem::take(&mut self.gather).freeze();
            self.send(full).await?;
        }
        Ok(())
    }

    async fn send(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let mut ok = self.md5_tx.send(chunk.clone()).await.is_ok();
        if let Some(tx) = &self.extra_tx {
            ok &= tx.send(chunk.clone()).await.is_ok();
        }
        ok &= self.write_tx.send(WriteMsg::Data(chunk)).await.is_ok();
        if ok {
            Ok(())
        } else {
            // A thread stopped early: the writer failed (disk full, ...). Report its error.
            Err(self.fail().await)
        }
    }

    /// The error that stopped a thread. Closes the writer's channel first so that it ends
    /// (removing the temp file) if it was not the one that stopped.
    async fn fail(&mut self) -> StoreError {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.write_tx, closed));
        match (&mut self.writer).await {
            Ok(Err(e)) => internal(e),
            Ok(Ok(_)) => internal("a hashing thread stopped early"),
            Err(join) => internal(join),
        }
    }

    async fn finish(mut self) -> Result<(TempFile, Digests), StoreError> {
        if !self.gather.is_empty() {
            let rest = std::mem::take(&mut self.gather).freeze();
            self.send(rest).await?;
        }
        if self.write_tx.send(WriteMsg::Finish).await.is_err() {
            return Err(self.fail().await);
        }
        drop(self.write_tx);
        drop(self.md5_tx);
        drop(self.extra_tx);
        let mut digests = Digests {
            md5: self.md5.await.map_err(internal)?,
            ..Digests::default()
        };
        if let Some(extra) = self.extra {
            extra.await.map_err(internal)?.finish(&mut digests);
        }
        match self.writer.await.map_err(internal)? {
            Ok(Some(temp)) => Ok((temp, digests)),
            Ok(None) => Err(internal("the writing thread stopped early")),
            Err(e) => Err(internal(e)),
        }
    }
}

// ---- reading ----

/// An open data file: a file (kept readable by its descriptor after an unlink) or a RADOS
/// lease (which holds off the removal).
pub(super) enum Source {
    File(Arc<File>),
    Rados(Arc<ReadLease>),
}

impl Source {
    /// How much one read asks for: [`READ_CHUNK`] of a file; of RADOS, the rest of the
    /// stripe (one request per stripe, not four).
    fn chunk_at(&self, offset: u64) -> u64 {
        match self {
            Source::File(_) => READ_CHUNK,
            Source::Rados(_) => STRIPE - offset % STRIPE,
        }
    }

    fn read_at(&self, offset: u64, len: u64) -> io::Result<Bytes> {
        match self {
            Source::File(file) => {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, offset)?;
                Ok(Bytes::from(buf))
            }
            Source::Rados(lease) => lease.read_at(offset, len),
        }
    }
}

impl Clone for Source {
    fn clone(&self) -> Source {
        match self {
            Source::File(file) => Source::File(Arc::clone(file)),
            Source::Rados(lease) => Source::Rados(Arc::clone(lease)),
        }
    }
}

/// A byte range of an open data file.
pub(super) struct Segment {
    /// The file, opened before the stream is handed out so that a concurrent delete (unlink)
    /// cannot take it away.
    pub file: Source,
    /// Where the range starts in the file.
    pub offset: u64,
    /// How long it is.
    pub len: u64,
}

struct ReadState {
    segments: std::collections::VecDeque<Segment>,
    ahead: Option<JoinHandle<io::Result<Bytes>>>,
}

impl ReadState {
    /// Starts reading the next chunk on a blocking thread.
    fn start_next(&mut self) -> Option<JoinHandle<io::Result<Bytes>>> {
        let seg = self.segments.front_mut()?;
        let n = seg.len.min(seg.file.chunk_at(seg.offset));
        let file = seg.file.clone();
        let offset = seg.offset;
        seg.offset += n;
        seg.len -= n;
        if seg.len == 0 {
            self.segments.pop_front();
        }
        Some(tokio::task::spawn_blocking(move || file.read_at(offset, n)))
    }
}

/// Streams the segments in order, in chunks ([`Source::chunk_at`]), reading one chunk ahead on a
/// blocking thread (pread) while the previous one is sent. No thread is held while the client
/// is slow to read.
pub(super) fn stream_segments(segments: Vec<Segment>) -> BodyStream {
    let state = ReadState {
        segments: segments.into_iter().filter(|s| s.len > 0).collect(),
        ahead: None,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        let job = match st.ahead.take() {
            Some(job) => job,
            None => st.start_next()?,
        };
        st.ahead = st.start_next();
        let chunk = match job.await {
            Ok(r) => r,
            Err(join) => Err(io::Error::other(join)),
        };
        if chunk.is_err() {
            st.segments.clear();
            st.ahead = None;
        }
        Some((chunk, st))
    }))
}
