//! Object bytes in Ceph RADOS (`[walrus] backend = "rados"`): each data file of the store is
//! striped over RADOS objects of [`STRIPE`] bytes named `<file id>.<stripe>`, through the
//! official `ceph` crate's librados calls.
//!
//! A stripe is written whole (`write_full`), and RADOS answers a write only once every
//! replica has it in its journal: the durability a file gets from fsync. The file's size is
//! set as the `size` attribute of stripe 0 once every stripe is written, and removal goes
//! from the last stripe down to stripe 0, so a removal cut short by a crash is finished by
//! the next one (stripe 0, still there, says how many follow; an unfinished upload's stripes
//! are counted upward until the first missing one).
//!
//! RADOS has no open file that outlives an unlink, so a data file being read is removed only
//! once its last reader in this process is done ([`ReadLease`]).

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use ceph::ceph::{IoCtx, Rados};
use ceph::error::RadosError;

use super::data::FileId;

/// Bytes per RADOS object: RADOS' own default object size (and RGW's stripe).
pub(super) const STRIPE: u64 = 4 << 20;

/// The attribute of stripe 0 that holds the file's size, set once the file is complete.
const SIZE_ATTR: &str = "koala.size";

/// Seconds a RADOS call may wait for the cluster before it fails.
const OP_TIMEOUT_SECS: &str = "30";

/// The `errno` librados reports for a missing object.
const ENOENT: i32 = 2;

/// A pool of the cluster that holds the store's data files.
pub(super) struct RadosData {
    ioctx: IoCtx,
    /// The cluster handle, which must outlive the ioctx. Leaked: the binding's handle may be
    /// shared between threads but not moved to one, and a store keeps it for the process.
    _cluster: &'static Rados,
    pool: String,
    /// Readers of each file in this process, and the files whose removal waits for them.
    readers: Mutex<Readers>,
}

#[derive(Default)]
struct Readers {
    count: HashMap<FileId, usize>,
    doomed: std::collections::HashSet<FileId>,
}

/// Maps a librados error to an I/O error, a missing object to `NotFound`.
fn io_error(err: RadosError) -> io::Error {
    match err {
        RadosError::ApiError(errno) if errno as i32 == ENOENT => {
            io::Error::new(io::ErrorKind::NotFound, "no such RADOS object")
        }
        other => io::Error::other(other.to_string()),
    }
}

fn stripe_name(id: FileId, stripe: u64) -> String {
    format!("{}.{stripe:04x}", id.hex())
}

impl RadosData {
    /// Connects to the cluster `conf` describes (as client `admin`) and opens `pool`.
    pub fn connect(conf: &Path, pool: &str) -> io::Result<RadosData> {
        let conf = conf
            .to_str()
            .ok_or_else(|| io::Error::other("the ceph.conf path is not UTF-8"))?;
        let cluster: &'static Rados = Box::leak(Box::new(
            ceph::ceph::connect_to_ceph("admin", conf).map_err(io_error)?,
        ));
        // A placement group that stays inactive fails the calls waiting on it instead of
        // holding their threads for ever.
        for option in ["rados_osd_op_timeout", "rados_mon_op_timeout"] {
            if let Err(e) = cluster.config_set(option, OP_TIMEOUT_SECS) {
                tracing::warn!(option, error = %e, "cannot bound RADOS calls");
            }
        }
        let ioctx = cluster.get_rados_ioctx(pool).map_err(io_error)?;
        Ok(RadosData {
            ioctx,
            _cluster: cluster,
            pool: pool.to_owned(),
            readers: Mutex::new(Readers::default()),
        })
    }

    /// The pool, for diagnostics.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Writes stripe `stripe` of `id` (at most [`STRIPE`] bytes), durably.
    pub fn write_stripe(&self, id: FileId, stripe: u64, data: &[u8]) -> io::Result<()> {
        self.ioctx
            .rados_object_write_full(&stripe_name(id, stripe), data)
            .map_err(io_error)
    }

    /// Marks `id` complete at `size` bytes (its stripes all written).
    pub fn seal(&self, id: FileId, size: u64) -> io::Result<()> {
        let mut value = size.to_be_bytes();
        self.ioctx
            .rados_object_setxattr(&stripe_name(id, 0), SIZE_ATTR, &mut value)
            .map_err(io_error)
    }

    /// Writes a whole small file at once.
    pub fn write_all(&self, id: FileId, data: &[u8]) -> io::Result<()> {
        for (stripe, part) in (0u64..).zip(data.chunks(STRIPE as usize)) {
            self.write_stripe(id, stripe, part)?;
        }
        if data.is_empty() {
            self.write_stripe(id, 0, &[])?;
        }
        self.seal(id, data.len() as u64)
    }

    /// The file's size if it is complete; `NotFound` if it does not exist.
    fn sealed_size(&self, id: FileId) -> io::Result<Option<u64>> {
        let mut value = [0u8; 8];
        match self
            .ioctx
            .rados_object_getxattr(&stripe_name(id, 0), SIZE_ATTR, &mut value)
        {
            Ok(8) => Ok(Some(u64::from_be_bytes(value))),
            Ok(_) => Ok(None),
            Err(RadosError::ApiError(errno)) if errno as i32 == 61 => {
                // ENODATA: stripe 0 exists, the file was never sealed.
                Ok(None)
            }
            Err(e) => Err(io_error(e)),
        }
    }

    /// Opens `id` for reading: a lease that keeps it until dropped, or `NotFound`.
    pub fn open(self: &Arc<Self>, id: FileId) -> io::Result<ReadLease> {
        self.ioctx
            .rados_object_stat(&stripe_name(id, 0))
            .map_err(io_error)?;
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.doomed.contains(&id) {
            // Its removal has begun (or waits for readers): a new reader must not start.
            return Err(io::Error::new(io::ErrorKind::NotFound, "being removed"));
        }
        *readers.count.entry(id).or_default() += 1;
        Ok(ReadLease {
            data: Arc::clone(self),
            id,
        })
    }

    /// Reads `len` bytes of `id` from `offset`, across stripes.
    pub fn read_at(&self, id: FileId, offset: u64, len: u64) -> io::Result<Bytes> {
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let stripe = at / STRIPE;
            let within = at % STRIPE;
            let want = (STRIPE - within).min(end - at) as usize;
            let mut buf = Vec::with_capacity(want);
            let got = self
                .ioctx
                .rados_object_read(&stripe_name(id, stripe), &mut buf, within)
                .map_err(io_error)?;
            let got = usize::try_from(got).unwrap_or(0).min(want);
            if got < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stripe {stripe} of {} is short", id.hex()),
                ));
            }
            out.extend_from_slice(&buf[..got]);
            at += got as u64;
        }
        Ok(Bytes::from(out))
    }

    /// Removes `id` (every stripe, stripe 0 last) and answers `true`, or, while readers in
    /// this process hold it, marks it for removal once they are done and answers `false` (the
    /// caller keeps its own record of the removal until a later call answers `true`). A
    /// missing file is fine. Either way no new reader may open it from now on.
    pub fn unlink(&self, id: FileId) -> io::Result<bool> {
        {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            let held = readers.count.get(&id).is_some_and(|n| *n > 0);
            readers.doomed.insert(id);
            if held {
                return Ok(false);
            }
        }
        let removed = self.remove(id);
        self.readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .doomed
            .remove(&id);
        removed.map(|()| true)
    }

    fn remove(&self, id: FileId) -> io::Result<()> {
        let stripes = match self.sealed_size(id) {
            Ok(Some(size)) => size.div_ceil(STRIPE).max(1),
            Ok(None) => {
                // Unsealed (an upload cut short): its stripes run from 0 to the first gap.
                let mut n = 1;
                loop {
                    match self.ioctx.rados_object_stat(&stripe_name(id, n)) {
                        Ok(_) => n += 1,
                        Err(RadosError::ApiError(errno)) if errno as i32 == ENOENT => break n,
                        // Anything else may hide stripes above: stripe 0 must stay to find them.
                        Err(e) => return Err(io_error(e)),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for stripe in (0..stripes).rev() {
            match self.ioctx.rados_object_remove(&stripe_name(id, stripe)) {
                Err(RadosError::ApiError(errno)) if errno as i32 == ENOENT => {}
                other => other.map_err(io_error)?,
            }
        }
        Ok(())
    }

    /// Every data file created during `epoch` (its stripe 0), by listing the pool.
    pub fn files_of_epoch(&self, epoch: u64) -> io::Result<Vec<FileId>> {
        let ctx = self.ioctx.rados_list_pool_objects().map_err(io_error)?;
        let mut out = Vec::new();
        for object in (ceph::ceph::Pool { ctx }) {
            let Some(hex) = object.name.strip_suffix(".0000") else {
                continue;
            };
            if let Some(id) = FileId::parse(hex).filter(|id| id.epoch() == epoch) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Ends a read of `id`; the last reader of a file marked for removal removes it, off the
    /// reactor. (The caller's record of the removal stays until its next open, which finds
    /// the file gone.)
    fn release(self: &Arc<Self>, id: FileId) {
        let remove = {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            let left = match readers.count.get_mut(&id) {
                Some(n) => {
                    *n -= 1;
                    *n
                }
                None => 0,
            };
            if left == 0 {
                readers.count.remove(&id);
            }
            left == 0 && readers.doomed.contains(&id)
        };
        if remove {
            let data = Arc::clone(self);
            self.off_the_reactor(move || {
                if let Err(e) = data.unlink(id) {
                    tracing::warn!(file = %id.hex(), error = %e, "cannot remove a RADOS data file");
                }
            });
        }
    }

    /// Runs a blocking librados call on a blocking thread when there is a runtime.
    pub fn off_the_reactor(&self, call: impl FnOnce() + Send + 'static) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(call)),
            Err(_) => call(),
        }
    }
}

/// A data file held for reading: its removal waits until every lease is dropped.
pub(super) struct ReadLease {
    data: Arc<RadosData>,
    id: FileId,
}

impl ReadLease {
    /// Reads `len` bytes from `offset`.
    pub fn read_at(&self, offset: u64, len: u64) -> io::Result<Bytes> {
        self.data.read_at(self.id, offset, len)
    }
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        self.data.release(self.id);
    }
}
