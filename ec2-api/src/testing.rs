//! What the crate's unit tests share: a cloud on a temp dir with real stores (RocksDB, the
//! identity store) and neither cluster nor bundle behind it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use identity::Identity;

use rpc::InstanceState;

use crate::ec2::{BundleAccess, BundleStore, Cloud, CloudSettings, Pending};
use crate::instances::InstanceRecord;
use crate::networks::Nic;
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
    fn buckets_of<'a>(&'a self, _: &'a str) -> Pending<'a, Result<Vec<String>, BundleAccess>> {
        Box::pin(async { Ok(Vec::new()) })
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

/// An instance of account 111111111111 in `state`, with a NIC at `10.77.0.{host}` when
/// `host` is given.
pub(crate) fn instance(id: &str, state: InstanceState, host: Option<u8>) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        reservation_id: "r-0000000a".into(),
        owner: "111111111111".into(),
        image_id: "emi-0000000e".into(),
        kernel_id: "eki-0000000k".into(),
        ramdisk_id: None,
        instance_type: "m1.small".into(),
        key_name: None,
        groups: vec![("sg-00000001".into(), "default".into())],
        zone: "cluster01".into(),
        launch_index: 0,
        launch_time: "2026-12-05T07:00:00.000Z".into(),
        launched_ms: 0,
        state,
        state_reason: None,
        node: Some("node-1".into()),
        client_token: None,
        start_timeout_secs: 600,
        ended_ms: None,
        missing_since_ms: None,
        nic: host.map(|host| Nic {
            network: 0,
            private_ip: Ipv4Addr::new(10, 77, 0, host),
            public_ip: None,
            elastic: false,
        }),
        public_key: None,
        user_data: None,
    }
}
