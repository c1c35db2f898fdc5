//! The console's mail: queued in the cloud controller's state in the same write as what it
//! tells of (an application, an approval), then delivered by a task of its own, so that a
//! message is neither lost by a crash nor sent for something that was not recorded.
//!
//! Delivered by SMTP to the relay `[mail] smtp` names (lettre); with none, written to
//! `DATA_DIR/mail/` as `.eml` files (the console says so to the administrator). A failed
//! delivery is tried again every [`RETRY`], for [`GIVE_UP`] at most.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ec2_api::state::{Batch, Record};
use ec2_api::CloudState;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// How long a failed delivery waits before the next attempt.
const RETRY: Duration = Duration::from_secs(30);

/// A message not delivered after this long is dropped (and said so in the log).
const GIVE_UP: Duration = Duration::from_secs(3 * 24 * 60 * 60);

/// Where the console's mail goes.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The SMTP relay, `HOST:PORT`; `None`: files in `dir`.
    pub smtp: Option<String>,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// Where messages are written when no relay is named (`DATA_DIR/mail`).
    pub dir: PathBuf,
}

/// A message waiting to be delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The text, plain.
    pub body: String,
    /// When it was queued (seconds since the epoch).
    #[serde(default)]
    queued: u64,
}

impl records::Versioned for Mail {
    const ENVELOPE: records::Envelope = ec2_api::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Mail {
    const TABLE: &'static str = "consolemail/";
}

impl Mail {
    /// A message to `to`.
    pub fn new(to: &str, subject: String, body: String) -> Mail {
        Mail {
            to: to.to_owned(),
            subject,
            body,
            queued: crate::now_secs(),
        }
    }
}

/// The queue and its delivery task.
pub struct Outbox {
    state: CloudState,
    settings: MailSettings,
    wake: tokio::sync::Notify,
}

impl Outbox {
    /// The outbox of `state`; [`Outbox::run`] delivers.
    pub fn new(state: CloudState, settings: MailSettings) -> Arc<Outbox> {
        Arc::new(Outbox {
            state,
            settings,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Whether mail goes to files rather than to a relay.
    pub fn to_files(&self) -> bool {
        self.settings.smtp.is_none()
    }

    /// Where mail files are written.
    pub fn dir(&self) -> &std::path::Path {
        &self.settings.dir
    }

    /// Adds `mail` to `batch`: it is queued when the batch is committed; then call
    /// [`Outbox::wake`].
    pub fn queue(batch: &mut Batch, mail: &Mail) {
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        batch.put(&format!("{nanos:024}-{}", hex::encode(id)), mail);
    }

    /// Tells the delivery task that mail was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers queued mail until the process ends: at once when woken, and every
    /// [`RETRY`] for what failed.
    pub async fn run(self: Arc<Self>) {
        loop {
            let queued = match self.state.scan::<Mail>("") {
                Ok(queued) => queued,
                Err(e) => {
                    tracing::error!("console mail: cannot read the outbox: {e}");
                    Vec::new()
                }
            };
            for (id, mail) in queued {
                match self.deliver(&id, &mail).await {
                    Ok(()) => {}
                    Err(why)
                        if crate::now_secs().saturating_sub(mail.queued) < GIVE_UP.as_secs() =>
                    {
                        tracing::warn!("console mail to {} not delivered yet: {why}", mail.to);
                        continue;
                    }
                    Err(why) => {
                        tracing::error!(
                            "console mail to {} dropped after {GIVE_UP:?}: {why}",
                            mail.to
                        );
                    }
                }
                let mut batch = Batch::new();
                batch.delete::<Mail>(&id);
                if let Err(e) = self.state.commit(batch) {
                    tracing::error!("console mail: cannot update the outbox: {e}");
                }
            }
            let _ = tokio::time::timeout(RETRY, self.wake.notified()).await;
        }
    }

    async fn deliver(&self, id: &str, mail: &Mail) -> Result<(), String> {
        let from: Mailbox = self
            .settings
            .from
            .parse()
            .map_err(|e| format!("the sender {:?}: {e}", self.settings.from))?;
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| format!("the recipient {:?}: {e}", mail.to))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(mail.body.clone())
            .map_err(|e| e.to_string())?;
        match &self.settings.smtp {
            Some(relay) => {
                let (host, port) = relay
                    .rsplit_once(':')
                    .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
                    .ok_or_else(|| format!("[mail] smtp = {relay:?} is not HOST:PORT"))?;
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .hello_name(ClientId::Domain(crate::host_name()))
                    .timeout(Some(Duration::from_secs(30)))
                    .build();
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            None => {
                let dir = self.settings.dir.clone();
                let path = dir.join(format!("{id}.eml"));
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    identity::write_atomic(&path, &bytes, 0o600)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            }
        }
    }
}
