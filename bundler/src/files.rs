//! Bundles as files in a directory, for the commands: parts and manifest written under
//! temporary names and renamed only when the whole bundle is good, and the unbundled image
//! likewise, so a failure never leaves a partial file under a final name.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::bundle::{bundle, BundleOptions, PartSink};
use crate::error::{Error, Result};
use crate::keys::BundleKey;
use crate::manifest::Manifest;
use crate::unbundle::{UnbundleSummary, Unbundler};

/// A file being written under a temporary name in its final directory; removed on drop
/// unless [`AtomicFile::commit`] renamed it into place.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates `.NAME.tmp-RANDOM` beside `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(
            ".{name}.tmp-{:08x}",
            rand::thread_rng().gen::<u32>()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// Flushes to disk and renames into place.
    pub fn commit(mut self) -> Result<PathBuf> {
        if let Some(f) = self.file.take() {
            f.sync_all()
                .map_err(|e| Error::io(format!("syncing {}", self.tmp.display()), e))?;
        }
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| Error::io(format!("renaming into {}", self.dest.display()), e))?;
        self.tmp = PathBuf::new();
        Ok(self.dest.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(std::io::Error::other("the file is already committed")),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the renames durable; not every filesystem allows it.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Parts written as files in a directory, published together by [`DirParts::commit`].
pub struct DirParts {
    dir: PathBuf,
    current: Option<AtomicFile>,
    done: Vec<AtomicFile>,
}

impl DirParts {
    /// Parts go into `dir`, which must exist.
    pub fn new(dir: &Path) -> Self {
        DirParts {
            dir: dir.to_path_buf(),
            current: None,
            done: Vec::new(),
        }
    }

    /// Renames every part into place; returns their paths.
    pub fn commit(self) -> Result<Vec<PathBuf>> {
        let paths = self
            .done
            .into_iter()
            .map(AtomicFile::commit)
            .collect::<Result<Vec<_>>>()?;
        sync_dir(&self.dir);
        Ok(paths)
    }
}

impl PartSink for DirParts {
    fn begin_part(&mut self, _index: usize, name: &str) -> Result<()> {
        self.current = Some(AtomicFile::create(&self.dir.join(name))?);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some(f) = &mut self.current {
            f.write_all(data)
                .map_err(|e| Error::io(format!("writing {}", f.dest.display()), e))?;
        }
        Ok(())
    }
    fn end_part(&mut self) -> Result<()> {
        if let Some(f) = self.current.take() {
            self.done.push(f);
        }
        Ok(())
    }
}

/// Keys for a new bundle: the cloud's cert (required), the user's cert and private key.
pub struct BundleKeys<'a> {
    /// AES key and IV of the bundle.
    pub key: &'a BundleKey,
    /// The cloud's public key (`--ec2cert`), for `ec2_encrypted_*`.
    pub cloud: &'a RsaPublicKey,
    /// The user's public key (`-c`), for `user_encrypted_*`; empty elements without it.
    pub user: Option<&'a RsaPublicKey>,
    /// The user's private key (`-k`) that signs; `UNSIGNED` without it.
    pub signer: Option<&'a RsaPrivateKey>,
}

/// The files a bundle was written to.
#[derive(Debug, Clone)]
pub struct BundleFiles {
    /// Paths of the parts, in order.
    pub parts: Vec<PathBuf>,
    /// Path of `PREFIX.manifest.xml`.
    pub manifest: PathBuf,
    /// The manifest as written.
    pub manifest_data: Manifest,
}

/// Bundles the image file `image` into `dest`: parts, then the manifest (filled in from
/// `template`: architecture, name = prefix, user, type, kernel, ramdisk, mappings, codes).
pub fn bundle_file(
    image: &Path,
    dest: &Path,
    mut template: Manifest,
    keys: &BundleKeys<'_>,
    options: &BundleOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<BundleFiles> {
    let file =
        File::open(image).map_err(|e| Error::io(format!("opening {}", image.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", image.display()), e))?
        .len();
    let mut parts = DirParts::new(dest);
    let outcome = bundle(
        std::io::BufReader::with_capacity(1 << 20, file),
        size,
        &template.name.clone(),
        keys.key,
        &mut parts,
        options,
        progress,
    )?;
    template.digest = outcome.digest;
    template.size = outcome.size;
    template.bundled_size = outcome.bundled_size;
    template.parts = outcome.parts;
    template.set_keys(keys.key, keys.cloud, keys.user)?;
    template.sign(keys.signer)?;
    let manifest_path = dest.join(format!("{}.manifest.xml", template.name));
    let mut mf = AtomicFile::create(&manifest_path)?;
    mf.write_all(template.render().as_bytes())
        .map_err(|e| Error::io(format!("writing {}", manifest_path.display()), e))?;
    let part_paths = parts.commit()?;
    let manifest = mf.commit()?;
    sync_dir(dest);
    Ok(BundleFiles {
        parts: part_paths,
        manifest,
        manifest_data: template,
    })
}

/// A name from a manifest used as a file name: refused when it could escape the directory.
fn safe_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(Error::ManifestInvalid {
            element: "a file name",
            value: name.chars().take(80).collect(),
        });
    }
    Ok(name)
}

/// Unbundles the bundle of `manifest_path` with its parts in `source` into
/// `dest/IMAGE-NAME`, checking the signature first when `signer` is given. Returns the path
/// of the image and what was checked.
pub fn unbundle_dir(
    manifest_path: &Path,
    source: &Path,
    dest: &Path,
    private: &RsaPrivateKey,
    signer: Option<&RsaPublicKey>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(PathBuf, UnbundleSummary)> {
    let raw = fs::read(manifest_path)
        .map_err(|e| Error::io(format!("reading {}", manifest_path.display()), e))?;
    let manifest = Manifest::parse(&raw)?;
    if let Some(signer) = signer {
        manifest.verify(signer)?;
    }
    let key = manifest.unwrap_key(private)?;
    let out_path = dest.join(safe_name(&manifest.name)?);
    let out = AtomicFile::create(&out_path)?;
    let mut un = Unbundler::new(
        &manifest,
        &key,
        std::io::BufWriter::with_capacity(1 << 20, out),
    )?;
    for (i, p) in manifest.parts.iter().enumerate() {
        let path = source.join(safe_name(&p.filename)?);
        let f = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingPart(i),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        un.read_part(i, f)?;
        progress(un.received(), manifest.bundled_size);
    }
    let (out, summary) = un.finish()?;
    let out = out
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", out_path.display()), e.into_error()))?;
    let path = out.commit()?;
    sync_dir(dest);
    Ok((path, summary))
}

/// Where euca-bundle-image writes when no `-d` is given: `$TMPDIR` (or `$TEMP`, `$TMP`), else
/// `/tmp`, the files themselves directly in it, as euca2ools 1.x did and the Eucalyptus 1.5
/// guides assume (`euca-upload-bundle -m /tmp/NAME.manifest.xml`).
pub fn default_bundle_dir() -> PathBuf {
    ["TMPDIR", "TEMP", "TMP"]
        .iter()
        .find_map(|v| std::env::var_os(v).filter(|s| !s.is_empty()))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}
