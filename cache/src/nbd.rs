//! The block path of a lazily filled image: a read-only NBD export on a Unix socket, which
//! QEMU's own NBD client opens as the backing of an instance's qcow2 overlay.
//!
//! The server speaks the fixed newstyle handshake (`NBD_OPT_GO`, `NBD_OPT_INFO`,
//! `NBD_OPT_EXPORT_NAME`, `NBD_OPT_LIST`, `NBD_OPT_ABORT`; every other option is refused as
//! unsupported, so structured replies and TLS are never negotiated; a malformed one as
//! invalid) and simple replies in transmission. Reads are answered from `LazyImage::read`, each in a task of its own so that
//! a read waiting for a chunk does not hold up reads of chunks already here; replies go back in
//! the order they are ready, which NBD allows. Writes are refused (`EPERM`): the guest writes
//! to its overlay, never to the base.
//!
//! Numbers and layouts follow the protocol document of the NBD project
//! (`doc/proto.md`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, Semaphore};

use crate::{CacheError, LazyImage};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;
const CLIENT_FLAGS_KNOWN: u32 = 0b11;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

/// `NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_CAN_MULTI_CONN`: a read-only export
/// that any number of connections may share.
const TRANSMISSION_FLAGS: u16 = 1 | (1 << 1) | (1 << 8);

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

/// The longest request served: QEMU's NBD client never asks for more than 32 MiB at once, and
/// a bound keeps a client from making the server allocate what it likes.
const MAX_REQUEST: u32 = 32 << 20;

/// The longest option payload read during the handshake (an export name is at most 4 KiB).
const MAX_OPTION: u32 = 8 << 10;

/// The export's size is the image's rounded up to this, the bytes past the image's end read
/// as zeros: QEMU's NBD client stalls on a size that is not a whole number of sectors.
const SECTOR: u64 = 512;

/// Replies queued for a connection's writer.
const REPLY_QUEUE: usize = 64;

/// Reads a connection may have in flight (each holds up to `MAX_REQUEST` bytes): more wait
/// in the client's socket.
const READS_IN_FLIGHT: usize = 32;

/// How long a client may take over the handshake.
const HANDSHAKE_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// A lazily filled image served on a Unix socket for as long as this lives. Dropping it
/// removes the socket and stops the accepting task (at its next turn); connections already
/// made are served until their client leaves (a running guest keeps reading its base).
pub struct NbdExport {
    image: LazyImage,
    accept: tokio::task::JoinHandle<()>,
    socket: PathBuf,
    name: String,
    size: u64,
}

impl NbdExport {
    /// Listens on `socket` (replacing a stale one) and serves `image` read-only, under its
    /// digest in hex as the export name.
    pub fn serve(image: LazyImage, socket: &Path) -> Result<Self, CacheError> {
        match std::fs::remove_file(socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CacheError::io("remove the stale socket", socket)(e)),
        }
        let listener = UnixListener::bind(socket).map_err(CacheError::io("listen on", socket))?;
        let name = image.digest().to_hex();
        let export = name.clone();
        let size = export_size(&image);
        let served = image.clone();
        let accept = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let image = image.clone();
                        let export = export.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_connection(stream, &image, &export).await {
                                tracing::debug!(image = %image.digest(), error = %e, "an NBD connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the NBD socket failed to accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self {
            image: served,
            accept,
            socket: socket.to_owned(),
            name,
            size,
        })
    }

    /// The image it serves.
    pub fn image(&self) -> &LazyImage {
        &self.image
    }

    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The export's name (the image's digest in hex).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size the export announces: the image's, rounded up to a whole sector.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The NBD URI of the export, as QEMU takes it for a backing file:
    /// `nbd+unix:///NAME?socket=PATH`.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///{}?socket={}", self.name, self.socket.display())
    }
}

impl Drop for NbdExport {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One client: the handshake, then requests until it disconnects.
async fn serve_connection(stream: UnixStream, image: &LazyImage, export: &str) -> io::Result<()> {
    let (read, write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut write = BufWriter::new(write);
    let agreed = tokio::time::timeout(
        HANDSHAKE_TIME,
        handshake(&mut read, &mut write, image, export),
    )
    .await
    .map_err(|_| invalid("no export within the handshake time"))??;
    if !agreed {
        return Ok(());
    }
    transmission(read, write, image).await
}

/// The fixed newstyle handshake. True when the client chose the export and transmission
/// begins; false when it went away without one.
async fn handshake(
    read: &mut BufReader<OwnedReadHalf>,
    write: &mut BufWriter<OwnedWriteHalf>,
    image: &LazyImage,
    export: &str,
) -> io::Result<bool> {
    write.write_u64(NBDMAGIC).await?;
    write.write_u64(IHAVEOPT).await?;
    write
        .write_u16(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)
        .await?;
    write.flush().await?;
    let client_flags = read.read_u32().await?;
    if client_flags & !CLIENT_FLAGS_KNOWN != 0 {
        return Err(invalid("the client asked for unknown handshake flags"));
    }
    let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
    let known = |name: &[u8]| name.is_empty() || name == export.as_bytes();
    loop {
        if read.read_u64().await? != IHAVEOPT {
            return Err(invalid("an option without IHAVEOPT"));
        }
        let option = read.read_u32().await?;
        let len = read.read_u32().await?;
        if len > MAX_OPTION {
            return Err(invalid("an option too long"));
        }
        let mut data = vec![0; len as usize];
        read.read_exact(&mut data).await?;
        match option {
            OPT_EXPORT_NAME => {
                if !known(&data) {
                    return Err(invalid("an unknown export"));
                }
                write.write_u64(export_size(image)).await?;
                write.write_u16(TRANSMISSION_FLAGS).await?;
                if !no_zeroes {
                    write.write_all(&[0; 124]).await?;
                }
                write.flush().await?;
                return Ok(true);
            }
            OPT_ABORT => {
                option_reply(write, option, REP_ACK, &[]).await?;
                return Ok(false);
            }
            OPT_LIST if data.is_empty() => {
                let mut entry = (export.len() as u32).to_be_bytes().to_vec();
                entry.extend_from_slice(export.as_bytes());
                option_reply(write, option, REP_SERVER, &entry).await?;
                option_reply(write, option, REP_ACK, &[]).await?;
            }
            OPT_LIST => option_reply(write, option, REP_ERR_INVALID, &[]).await?,
            OPT_INFO | OPT_GO => match parse_info_request(&data) {
                None => option_reply(write, option, REP_ERR_INVALID, &[]).await?,
                Some((name, _)) if !known(name) => {
                    option_reply(write, option, REP_ERR_UNKNOWN, &[]).await?
                }
                Some((_, wants)) => {
                    let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                    info.extend_from_slice(&export_size(image).to_be_bytes());
                    info.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                    option_reply(write, option, REP_INFO, &info).await?;
                    if wants.contains(&INFO_BLOCK_SIZE) {
                        let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                        for n in [1u32, 4096, MAX_REQUEST] {
                            sizes.extend_from_slice(&n.to_be_bytes());
                        }
                        option_reply(write, option, REP_INFO, &sizes).await?;
                    }
                    option_reply(write, option, REP_ACK, &[]).await?;
                    if option == OPT_GO {
                        return Ok(true);
                    }
                }
            },
            _ => option_reply(write, option, REP_ERR_UNSUP, &[]).await?,
        }
    }
}

/// The export name and the information types asked for in `NBD_OPT_INFO` / `NBD_OPT_GO`.
fn parse_info_request(data: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = data.get(4..4 + name_len)?;
    let rest = data.get(4 + name_len..)?;
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let wants = rest.get(2..)?;
    if wants.len() != count * 2 {
        return None;
    }
    let wants = wants
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    Some((name, wants))
}

/// Writes one option reply and flushes it.
async fn option_reply(
    write: &mut BufWriter<OwnedWriteHalf>,
    option: u32,
    reply: u32,
    data: &[u8],
) -> io::Result<()> {
    write.write_u64(OPTION_REPLY_MAGIC).await?;
    write.write_u32(option).await?;
    write.write_u32(reply).await?;
    write.write_u32(data.len() as u32).await?;
    write.write_all(data).await?;
    write.flush().await
}

/// A reply ready to go back: the request's handle, an errno (0 for success), and the data
/// of a successful read.
struct Reply {
    handle: u64,
    error: u32,
    data: Bytes,
}

/// Serves requests until the client disconnects; replies are written by a task of their own
/// as they become ready.
async fn transmission(
    mut read: BufReader<OwnedReadHalf>,
    write: BufWriter<OwnedWriteHalf>,
    image: &LazyImage,
) -> io::Result<()> {
    let (replies, queue) = mpsc::channel(REPLY_QUEUE);
    let writer = tokio::spawn(write_replies(write, queue));
    let result = serve_requests(&mut read, &replies, image).await;
    // The writer ends once every read in flight has replied and dropped its sender.
    drop(replies);
    let written = writer
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
    result.and(written)
}

/// Reads requests and answers each: reads in tasks of their own, the rest at once.
async fn serve_requests(
    read: &mut BufReader<OwnedReadHalf>,
    replies: &mpsc::Sender<Reply>,
    image: &LazyImage,
) -> io::Result<()> {
    let in_flight = Arc::new(Semaphore::new(READS_IN_FLIGHT));
    loop {
        if read.read_u32().await? != REQUEST_MAGIC {
            return Err(invalid("a request without the request magic"));
        }
        let _flags = read.read_u16().await?;
        let command = read.read_u16().await?;
        let handle = read.read_u64().await?;
        let offset = read.read_u64().await?;
        let len = read.read_u32().await?;
        let answer = |error| Reply {
            handle,
            error,
            data: Bytes::new(),
        };
        match command {
            CMD_READ => {
                let fits = offset
                    .checked_add(u64::from(len))
                    .is_some_and(|end| end <= export_size(image));
                if len > MAX_REQUEST || !fits {
                    send(replies, answer(EINVAL)).await?;
                    continue;
                }
                let image = image.clone();
                let replies = replies.clone();
                let permit = in_flight
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| io::Error::other("the read limit closed"))?;
                tokio::spawn(async move {
                    let reply = match read_padded(&image, offset, u64::from(len)).await {
                        Ok(data) => Reply {
                            handle,
                            error: 0,
                            data,
                        },
                        Err(e) => {
                            tracing::warn!(image = %image.digest(), offset, len, error = %e, "an NBD read failed");
                            Reply {
                                handle,
                                error: EIO,
                                data: Bytes::new(),
                            }
                        }
                    };
                    let _ = replies.send(reply).await;
                    drop(permit);
                });
            }
            CMD_WRITE => {
                if len > MAX_REQUEST {
                    return Err(invalid("a write too long"));
                }
                // The payload follows the request: read past it, then refuse.
                let mut skip = (&mut *read).take(u64::from(len));
                tokio::io::copy(&mut skip, &mut tokio::io::sink()).await?;
                send(replies, answer(EPERM)).await?;
            }
            CMD_DISC => return Ok(()),
            CMD_FLUSH => send(replies, answer(0)).await?,
            _ => send(replies, answer(EINVAL)).await?,
        }
    }
}

/// The size an export of `image` announces.
fn export_size(image: &LazyImage) -> u64 {
    image.size().next_multiple_of(SECTOR)
}

/// Reads from the image, with zeros for the bytes past its end in its last sector.
async fn read_padded(image: &LazyImage, offset: u64, len: u64) -> Result<Bytes, CacheError> {
    let end = offset + len;
    if end <= image.size() {
        return image.read(offset, len).await;
    }
    let within = image.size().saturating_sub(offset).min(len);
    let mut data = image.read(offset.min(image.size()), within).await?.to_vec();
    data.resize(len as usize, 0);
    Ok(Bytes::from(data))
}

/// Queues a reply for the writer.
async fn send(replies: &mpsc::Sender<Reply>, reply: Reply) -> io::Result<()> {
    replies
        .send(reply)
        .await
        .map_err(|_| io::Error::other("the NBD reply writer stopped"))
}

/// Writes replies as they come, flushing whenever no other is waiting.
async fn write_replies(
    mut write: BufWriter<OwnedWriteHalf>,
    mut queue: mpsc::Receiver<Reply>,
) -> io::Result<()> {
    while let Some(reply) = queue.recv().await {
        write.write_u32(SIMPLE_REPLY_MAGIC).await?;
        write.write_u32(reply.error).await?;
        write.write_u64(reply.handle).await?;
        write.write_all(&reply.data).await?;
        if queue.is_empty() {
            write.flush().await?;
        }
    }
    write.flush().await
}

/// A protocol violation by the client, which ends its connection.
fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("NBD client sent {what}"),
    )
}
