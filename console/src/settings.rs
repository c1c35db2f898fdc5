//! The console's own settings, in the cloud controller's state (`console/settings`): what the
//! administrator confirmed at the first run.

use ec2_api::state::{Record, StateError};
use ec2_api::CloudState;
use serde::{Deserialize, Serialize};

/// The key of the one settings record.
const KEY: &str = "settings";

/// What the administrator confirmed at the first run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    /// The Walrus URL people's credentials name, once confirmed.
    #[serde(default)]
    pub walrus_url: Option<String>,
}

impl records::Versioned for Settings {
    const ENVELOPE: records::Envelope = ec2_api::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Settings {
    const TABLE: &'static str = "console/";
}

impl Settings {
    /// The settings in force (defaults before the first run).
    pub fn load(state: &CloudState) -> Result<Settings, StateError> {
        Ok(state.get::<Settings>(KEY)?.unwrap_or_default())
    }

    /// Stores the settings, synced.
    pub fn save(&self, state: &CloudState) -> Result<(), StateError> {
        state.put(KEY, self)
    }
}

/// Whether `url` is an absolute http(s) URL naming a host, as a Walrus URL must be.
pub fn plausible_url(url: &str) -> bool {
    url.parse::<http::Uri>().is_ok_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    })
}
