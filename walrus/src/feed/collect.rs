//! Reference counting of plain images by registration, and their collection.
//!
//! Each registered image holds a reference on the manifest it was registered with (the
//! cloud controller records it at RegisterImage and releases it at DeregisterImage, or when
//! the registration fails: [`ImageFeed::retain`], [`ImageFeed::release`]). A plain image is
//! in use while some registration's manifest unbundles into it (several registrations may
//! share one image). The collector removes an image no registration uses once it has been
//! unused, and not handed out, for the grace period: a node that learnt the image's hash
//! just before the deregistration, or is fetching it, is not cut off (a fetch under way
//! also keeps its open file). An image collected too early costs only time: the next
//! request for a manifest that unbundles into it unbundles it again.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{internal, is_sha256_hex, lock, FeedError, ImageFeed, Inner};
use crate::names::{BucketName, ObjectKey};
use crate::store::Registration;

/// How long an image no registration uses stays after its last use: longer than any node
/// takes between learning an image's hash (from Walrus or from the cloud controller) and
/// fetching it, and than a RunInstances takes to reach its node.
pub const IMAGE_GRACE: Duration = Duration::from_secs(10 * 60);

/// The collector looks at most this long apart (and more often for a short grace).
const COLLECT_EVERY: Duration = Duration::from_secs(60);

/// The collector looks at least this long apart, however short the grace.
const COLLECT_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// When each image was last handed out, and since when each image no registration uses has
/// been seen so.
#[derive(Debug, Default)]
pub(super) struct Uses {
    served: HashMap<String, Instant>,
    unused_since: HashMap<String, Instant>,
}

impl Uses {
    /// The image `sha256` is being handed out now.
    pub(super) fn served(&mut self, sha256: &str) {
        self.served.insert(sha256.to_owned(), Instant::now());
    }
}

impl ImageFeed {
    /// Records that image `image_id` is registered with the manifest whose bytes hash to
    /// `manifest_sha256` (at `location`): the plain image it unbundles into is kept while
    /// the registration lasts. Recording it again replaces it. Blocking (a synced write).
    pub fn retain(
        &self,
        image_id: &str,
        location: &str,
        manifest_sha256: &str,
    ) -> Result<(), FeedError> {
        if !is_sha256_hex(manifest_sha256) {
            return Err(FeedError::InvalidManifest(format!(
                "'{manifest_sha256}' is not the SHA-256 of a manifest."
            )));
        }
        let registration = Registration {
            location: location.to_owned(),
            manifest_sha256: manifest_sha256.to_owned(),
        };
        self.inner
            .store
            .put_registration(image_id, &registration)
            .map_err(internal(format!(
                "cannot record the registration of {image_id}"
            )))?;
        tracing::info!(image = image_id, location, "registration recorded");
        self.prefetch(location, manifest_sha256);
        Ok(())
    }

    /// Unbundles the registered manifest in the background, so that its plain image is there
    /// before any node asks for it: a node asking meanwhile joins this unbundling (one per
    /// manifest), never starts another. Without a runtime (a blocking caller outside one),
    /// the first node's request unbundles as before.
    fn prefetch(&self, location: &str, manifest_sha256: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some((bucket, key)) = location
            .split_once('/')
            .and_then(|(b, k)| Some((BucketName::parse(b)?, ObjectKey::parse(k)?)))
        else {
            return;
        };
        let (feed, pin, location) = (
            self.clone(),
            manifest_sha256.to_owned(),
            location.to_owned(),
        );
        runtime.spawn(async move {
            match feed.image_for_manifest(&bucket, &key, Some(&pin)).await {
                Ok(image) => {
                    tracing::info!(location, image = %image.sha256, "unbundled at registration")
                }
                // The node that asks will be told why; nothing is kept of a failure.
                Err(e) => tracing::warn!(location, error = %e, "unbundling at registration failed"),
            }
        });
    }

    /// Ends image `image_id`'s registration: its plain image is collected after the grace
    /// period unless another registration uses it. Releasing an image never recorded
    /// succeeds. Blocking (a synced write).
    pub fn release(&self, image_id: &str) -> Result<(), FeedError> {
        self.inner
            .store
            .delete_registration(image_id)
            .map_err(internal(format!(
                "cannot release the registration of {image_id}"
            )))?;
        tracing::info!(image = image_id, "registration released");
        Ok(())
    }
}

/// Starts the collector for `inner`, when called within a Tokio runtime; it stops when the
/// feed is dropped.
pub(super) fn spawn(inner: &Arc<Inner>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: unused plain images will not be collected");
        return;
    };
    let every = (inner.grace / 4).clamp(COLLECT_AT_MOST_EVERY, COLLECT_EVERY);
    let feed: Weak<Inner> = Arc::downgrade(inner);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(inner) = feed.upgrade() else {
                return;
            };
            let done = tokio::task::spawn_blocking(move || inner.collect(Instant::now())).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!("cannot collect unused images: {}", rpc::error_chain(&e))
                }
                Err(e) => tracing::error!("the image collector failed: {e}"),
            }
        }
    });
}

impl Inner {
    /// Removes the plain images no registration uses that have been unused and not handed
    /// out for the grace period, with their index entries.
    fn collect(&self, now: Instant) -> Result<(), FeedError> {
        let entries = self
            .store
            .image_entries()
            .map_err(internal("cannot read the image index"))?;
        let registrations = self
            .store
            .registrations()
            .map_err(internal("cannot read the registrations"))?;
        let image_of: HashMap<&str, &str> = entries
            .iter()
            .map(|(manifest, entry)| (manifest.as_str(), entry.sha256.as_str()))
            .collect();
        let used: HashSet<&str> = registrations
            .iter()
            .filter_map(|(_, r)| image_of.get(r.manifest_sha256.as_str()).copied())
            .collect();
        let mut on_disk = HashSet::new();
        let listing = |e| internal(format!("cannot list {}", self.images.display()))(e);
        for entry in std::fs::read_dir(&self.images).map_err(listing)? {
            let name = entry.map_err(listing)?.file_name();
            if let Some(name) = name.to_str().filter(|n| is_sha256_hex(n)) {
                on_disk.insert(name.to_owned());
            }
        }

        let grace = self.grace;
        let mut collected = HashSet::new();
        {
            let mut uses = lock(&self.uses);
            let uses = &mut *uses;
            uses.served
                .retain(|_, at| now.saturating_duration_since(*at) < grace);
            uses.unused_since
                .retain(|sha256, _| on_disk.contains(sha256) && !used.contains(sha256.as_str()));
            for sha256 in &on_disk {
                if used.contains(sha256.as_str()) {
                    continue;
                }
                let since = *uses.unused_since.entry(sha256.clone()).or_insert(now);
                if now.saturating_duration_since(since) < grace || uses.served.contains_key(sha256)
                {
                    continue;
                }
                match std::fs::remove_file(self.images.join(sha256)) {
                    Ok(()) => {
                        // Its chunk list goes with it (made again if the image comes back).
                        let _ = std::fs::remove_file(self.chunks.join(sha256));
                        uses.unused_since.remove(sha256);
                        collected.insert(sha256.clone());
                    }
                    Err(e) => tracing::warn!(sha256, "cannot remove an unused image: {e}"),
                }
            }
        }
        if collected.is_empty() {
            return Ok(());
        }
        let forgotten: Vec<String> = entries
            .into_iter()
            .filter(|(_, entry)| collected.contains(&entry.sha256))
            .map(|(manifest, _)| manifest)
            .collect();
        self.store
            .remove_image_entries(&forgotten)
            .map_err(internal("cannot forget the collected images"))?;
        for sha256 in &collected {
            tracing::info!(sha256, "collected a plain image no registration uses");
        }
        Ok(())
    }
}
