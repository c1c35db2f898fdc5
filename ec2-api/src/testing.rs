//! What the crate's unit tests share: a cloud on a temp dir with real stores (RocksDB, the
//! identity store) and neither cluster nor bundle behind it.

use std::path::Path;
use std::sync::Arc;

use identity::Identity;

use crate::ec2::{BundleAccess, BundleStore, Cloud, CloudSettings, Pending};
use crate::{CloudState, ClusterSet};

/// The bundle store of a cloud whose tests read no bundle.
pub(crate) struct NoBundles;

impl BundleStore for NoBundles {
    fn size<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> Pending<'a, Result<u64, BundleAccess>> {
        Box::pin(async { Err(BundleAccess::NotFound) })
    }
    fn read<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: u64,
    ) -> Pending<'a, Result<Vec<u8>, BundleAccess>> {
        Box::pin(async { Err(BundleAccess::NotFound) })
    }
    fn retain<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> Pending<'a, Result<(), BundleAccess>> {
        Box::pin(async { Ok(()) })
    }
    fn release<'a>(&'a self, _: &'a str) -> Pending<'a, Result<(), BundleAccess>> {
        Box::pin(async { Ok(()) })
    }
}

/// The settings of a test cloud: no starting value, no guest network.
pub(crate) fn settings() -> CloudSettings {
    CloudSettings {
        region: "r".into(),
        ec2_url: "http://h:1/services/compute/".into(),
        property_defaults: crate::StartingValues::default(),
        network: None,
        metadata: None,
    }
}

/// A cloud whose stores live in `dir`, with `settings`.
pub(crate) fn cloud_in(dir: &Path, settings: CloudSettings) -> Cloud {
    let state = CloudState::open(&dir.join("clc")).unwrap();
    let clusters = ClusterSet::open(
        &state,
        Box::new(|_: &str| -> Arc<dyn crate::Clusters> {
            unreachable!("no cluster is registered")
        }),
    )
    .unwrap();
    Cloud {
        state,
        identity: Identity::open(&dir.join("identity")).unwrap(),
        bundles: Arc::new(NoBundles),
        clusters: Arc::new(clusters),
        settings: Arc::new(settings),
        unwraps: Arc::default(),
        guest_networks: Arc::default(),
    }
}
