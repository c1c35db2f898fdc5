//! Bundles in Walrus (S3, path style): `euca-upload-bundle` puts a bundle's parts (a few at
//! a time) and then its manifest, so a registered manifest never names a missing part;
//! `euca-delete-bundle` removes them as the manifest lists them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bundler::progress::ProgressBar;
use bundler::Manifest;
use clap::Parser;

use super::{Command, Connection, Endpoint, EucaError, ProgressArgs, Table};
use crate::client::{s3_put_object, s3_request, s3_request_with, s3_url, service_error};

/// How many parts are uploaded at once: enough to hide each request's round trips, few
/// enough not to compete with the server for a small machine's cores.
const PARALLEL_UPLOADS: usize = 4;

/// Where a bundle lives: `BUCKET[/PREFIX]`, the prefix kept with a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    bucket: String,
    prefix: String,
}

impl Place {
    fn parse(arg: &str) -> Result<Place, EucaError> {
        let (bucket, prefix) = arg.split_once('/').unwrap_or((arg, ""));
        if bucket.is_empty() {
            return Err(EucaError::Usage(format!(
                "argument -b/--bucket: {arg:?} must have the form BUCKET[/PREFIX]"
            )));
        }
        let prefix = prefix.trim_matches('/');
        Ok(Place {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    /// The key of the bundle file called `name`.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn url(&self, endpoint: &Endpoint, name: &str) -> String {
        s3_url(&endpoint.url, &self.bucket, &self.key(name))
    }

    fn bucket_url(&self, endpoint: &Endpoint) -> String {
        s3_url(&endpoint.url, &self.bucket, "")
    }
}

/// A local file's name, for the key it is stored under.
fn file_name(path: &Path) -> Result<String, EucaError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| EucaError::Usage(format!("{} is not a file name", path.display())))
}

/// Upload a bundle prepared by euca-bundle-image to the cloud.
#[derive(Parser, Debug)]
#[command(version)]
pub struct UploadBundle {
    /// Bucket to upload the bundle to, with an optional key prefix.
    #[arg(short = 'b', long = "bucket", value_name = "BUCKET[/PREFIX]")]
    bucket: String,
    /// Manifest of the bundle to upload.
    #[arg(short = 'm', long = "manifest", value_name = "FILE")]
    manifest: PathBuf,
    /// Canned ACL policy to apply to the bundle's objects.
    #[arg(long = "acl", default_value = "aws-exec-read",
          value_parser = ["public-read", "aws-exec-read", "ec2-bundle-read"])]
    acl: String,
    /// Directory that contains the bundle's parts (default: the manifest's).
    #[arg(short = 'd', long = "directory", value_name = "DIR")]
    directory: Option<PathBuf>,
    /// Location constraint of the bucket, if it has to be created.
    #[arg(long = "location", value_name = "LOCATION")]
    location: Option<String>,
    /// Do not upload the manifest.
    #[arg(long = "skipmanifest")]
    skipmanifest: bool,
    #[command(flatten)]
    progress: ProgressArgs,
    #[command(flatten)]
    connection: Connection,
}

impl Command for UploadBundle {
    fn run(self) -> Result<(), EucaError> {
        let place = Place::parse(&self.bucket)?;
        let manifest_name = file_name(&self.manifest)?;
        let manifest_bytes = std::fs::read(&self.manifest).map_err(EucaError::io(format!(
            "cannot read {}",
            self.manifest.display()
        )))?;
        let manifest = Manifest::parse(&manifest_bytes)?;
        let dir = match &self.directory {
            Some(dir) => dir.clone(),
            None => self
                .manifest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let mut parts = Vec::new();
        for part in &manifest.parts {
            let path = dir.join(&part.filename);
            let len = std::fs::metadata(&path)
                .map_err(EucaError::io(format!("cannot read {}", path.display())))?
                .len();
            parts.push((part.filename.as_str(), path, len));
        }
        let endpoint = self.connection.endpoint("S3_URL")?;
        ensure_bucket(&endpoint, &place, self.location.as_deref())?;

        let total = parts.iter().map(|(_, _, len)| len).sum();
        let bar = Mutex::new(ProgressBar::new(
            manifest_name.trim_end_matches(".manifest.xml"),
            total,
            self.progress.force(),
        ));
        let acl = [("x-amz-acl", self.acl.as_str())];
        let uploaded = upload_parallel(&parts, |(name, path, len), sent| {
            let file = File::open(path)
                .map_err(EucaError::io(format!("cannot read {}", path.display())))?;
            let body = Counted {
                inner: file.take(*len),
                on_read: &|n| {
                    let done = sent.fetch_add(n, Ordering::Relaxed) + n;
                    if let Ok(mut bar) = bar.lock() {
                        bar.update(done);
                    }
                },
            };
            s3_put_object(
                &place.url(&endpoint, name),
                body,
                *len,
                &acl,
                &endpoint.creds,
            )?;
            Ok(())
        });
        if let Ok(mut bar) = bar.lock() {
            bar.finish();
        }
        uploaded?;
        if !self.skipmanifest {
            s3_put_object(
                &place.url(&endpoint, &manifest_name),
                manifest_bytes.as_slice(),
                manifest_bytes.len() as u64,
                &acl,
                &endpoint.creds,
            )?;
        }
        Table::new(false).line(&format!(
            "Uploaded {}/{}",
            place.bucket,
            place.key(&manifest_name)
        ))
    }
}

/// Runs `upload` on every item, [`PARALLEL_UPLOADS`] at a time, handing each the shared
/// count of bytes sent; after a failure no further item starts, and the first failure is
/// returned.
fn upload_parallel<T: Sync>(
    items: &[T],
    upload: impl Fn(&T, &AtomicU64) -> Result<(), EucaError> + Sync,
) -> Result<(), EucaError> {
    let next = AtomicUsize::new(0);
    let sent = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let worker = || -> Result<(), EucaError> {
        while !failed.load(Ordering::Relaxed) {
            let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            if let Err(err) = upload(item, &sent) {
                failed.store(true, Ordering::Relaxed);
                return Err(err);
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL_UPLOADS.min(items.len()))
            .map(|_| scope.spawn(worker))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<(), EucaError>>()
    })
}

/// A reader that reports how many bytes passed through it.
struct Counted<'a, R> {
    inner: R,
    on_read: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            (self.on_read)(n as u64);
        }
        Ok(n)
    }
}

/// Makes sure the bucket exists, as euca2ools does: `GET /bucket?max-keys=0`, and a
/// `PUT /bucket` when that says 404.
fn ensure_bucket(
    endpoint: &Endpoint,
    place: &Place,
    location: Option<&str>,
) -> Result<(), EucaError> {
    let url = place.bucket_url(endpoint);
    let (status, body) = s3_request("GET", &format!("{url}?max-keys=0"), &endpoint.creds)?;
    match status {
        200 => return Ok(()),
        404 => {}
        _ => return Err(service_error(status, &body).into()),
    }
    let config = location
        .map(|l| {
            let mut w = xml::Writer::new(xml::Escaping::LOSSLESS);
            w.open("CreateBucketConfiguration")
                .elem("LocationConstraint", l)
                .close("CreateBucketConfiguration");
            w.finish()
        })
        .unwrap_or_default();
    let (status, body) = s3_request_with("PUT", &url, config.as_bytes(), &endpoint.creds)?;
    match status {
        200 => Ok(()),
        _ => Err(service_error(status, &body).into()),
    }
}

/// Which manifest names the bundle to delete (exactly one).
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct WhichManifest {
    /// The bundle's manifest in the bucket (NAME.manifest.xml).
    #[arg(short = 'm', long = "manifest", value_name = "MANIFEST")]
    manifest: Option<PathBuf>,
    /// The bundle's prefix ("fry" for "fry.manifest.xml").
    #[arg(short = 'p', long = "prefix", value_name = "PREFIX")]
    prefix: Option<String>,
    /// Use a local manifest file to find what to delete.
    #[arg(long = "local-manifest", value_name = "FILE")]
    local_manifest: Option<PathBuf>,
}

impl WhichManifest {
    /// The manifest's name in the bucket, and the local file to read it from instead of the
    /// bucket (`--local-manifest`).
    fn resolve(&self) -> Result<(String, Option<&Path>), EucaError> {
        match (&self.local_manifest, &self.manifest, &self.prefix) {
            (Some(local), _, _) => Ok((file_name(local)?, Some(local))),
            (None, Some(manifest), _) => Ok((file_name(manifest)?, None)),
            (None, None, Some(prefix)) => Ok((format!("{prefix}.manifest.xml"), None)),
            (None, None, None) => Err(EucaError::Usage(
                "one of -m/--manifest, -p/--prefix, --local-manifest is required".into(),
            )),
        }
    }
}

/// Delete a previously-uploaded bundle.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DeleteBundle {
    /// Location of the bundle to delete.
    #[arg(short = 'b', long = "bucket", value_name = "BUCKET[/PREFIX]")]
    bucket: String,
    #[command(flatten)]
    which: WhichManifest,
    /// Delete the bucket as well (it must then be empty).
    #[arg(long = "clear")]
    clear: bool,
    #[command(flatten)]
    connection: Connection,
}

impl Command for DeleteBundle {
    fn run(self) -> Result<(), EucaError> {
        let place = Place::parse(&self.bucket)?;
        let endpoint = self.connection.endpoint("S3_URL")?;
        let (manifest_name, local) = self.which.resolve()?;
        let bytes = match local {
            Some(path) => std::fs::read(path)
                .map_err(EucaError::io(format!("cannot read {}", path.display())))?,
            None => {
                let url = place.url(&endpoint, &manifest_name);
                let (status, body) = s3_request("GET", &url, &endpoint.creds)?;
                if status != 200 {
                    return Err(service_error(status, &body).into());
                }
                body.into_bytes()
            }
        };
        let manifest = Manifest::parse(&bytes)?;
        for part in &manifest.parts {
            delete(&place.url(&endpoint, &part.filename), &endpoint)?;
        }
        delete(&place.url(&endpoint, &manifest_name), &endpoint)?;
        if self.clear {
            delete(&place.bucket_url(&endpoint), &endpoint)?;
        }
        Ok(())
    }
}

/// `DELETE url` (S3 answers 204 for a key already gone).
fn delete(url: &str, endpoint: &Endpoint) -> Result<(), EucaError> {
    let (status, body) = s3_request("DELETE", url, &endpoint.creds)?;
    match status {
        200 | 204 => Ok(()),
        _ => Err(service_error(status, &body).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_15_guides_credential_flags_are_read() {
        let args = [
            "euca-delete-bundle",
            "-a",
            "AKIAEXAMPLE",
            "-s",
            "secret",
            "--url",
            "http://walrus:8773/services/Walrus",
            "-b",
            "bkt",
            "-p",
            "image",
        ];
        let cmd = DeleteBundle::try_parse_from(DeleteBundle::spellings(
            args.iter().map(std::ffi::OsString::from).collect(),
        ))
        .expect("parsed");
        assert_eq!(cmd.connection.access_key_id.as_deref(), Some("AKIAEXAMPLE"));
        assert_eq!(cmd.connection.secret_key.as_deref(), Some("secret"));
        assert_eq!(
            cmd.connection.url.as_deref(),
            Some("http://walrus:8773/services/Walrus")
        );
        let upload = UploadBundle::try_parse_from(UploadBundle::spellings(
            [
                "euca-upload-bundle",
                "--access-key",
                "K",
                "-s",
                "S",
                "-b",
                "b",
                "-m",
                "x.manifest.xml",
            ]
            .iter()
            .map(std::ffi::OsString::from)
            .collect(),
        ))
        .expect("parsed");
        assert_eq!(upload.connection.access_key_id.as_deref(), Some("K"));
        assert_eq!(upload.connection.secret_key.as_deref(), Some("S"));
    }

    #[test]
    fn bucket_and_prefix() {
        let place = Place::parse("bkt/images/v1/").unwrap();
        assert_eq!(place.bucket, "bkt");
        assert_eq!(place.key("x.manifest.xml"), "images/v1/x.manifest.xml");
        assert_eq!(Place::parse("bkt").unwrap().key("x.part.00"), "x.part.00");
        assert_eq!(Place::parse("bkt/").unwrap().prefix, "");
        assert!(Place::parse("/x").is_err());
    }

    #[test]
    fn parallel_uploads_do_every_item_once_and_stop_after_a_failure() {
        let items: Vec<u64> = (1..=10).collect();
        let seen = Mutex::new(Vec::new());
        upload_parallel(&items, |item, sent| {
            sent.fetch_add(*item, Ordering::Relaxed);
            seen.lock().unwrap().push(*item);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, items);

        let started = AtomicUsize::new(0);
        let failed = upload_parallel(&items, |item, _| {
            started.fetch_add(1, Ordering::Relaxed);
            if *item == 1 {
                return Err(EucaError::Missing("etag"));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        });
        assert!(matches!(failed, Err(EucaError::Missing("etag"))));
        assert!(
            started.into_inner() < items.len(),
            "no new part after a failure"
        );
    }
}
