//! The account store: accounts, users and access keys in RocksDB, written durably (synced
//! WAL) so that a key handed out is never lost by a crash.
//!
//! One column family, keys by prefix; every value is JSON carrying a format version `v` beside
//! its fields ([`records::Envelope::Flat`]), migrated on read when a record changes:
//!
//! | key | value |
//! |---|---|
//! | `acct/<account id>` | account (id, name, created) |
//! | `name/<account name>` | the account id (unique names) |
//! | `user/<account id>/<user name>` | user, with its [`Role`] |
//! | `akey/<access key id>` | access key: secret, owner, status (the hot path of every request) |
//! | `ukey/<account id>/<user name>/<access key id>` | index of a user's keys |
//! | `cert/<account id>/<user name>/<certificate id>` | a user's signing certificate (no key) |
//! | `login/<account id>/<user name>` | a user's console password, hashed (see `login.rs`) |

use std::path::Path;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::RngCore;
use records::{Batch, Db, Envelope, Versioned};
use serde::{Deserialize, Serialize};

use crate::ca::CloudCa;
use crate::{
    ComponentKind, Credentials, IdentityError, Principal, Role, SecretSource, ADMIN_ACCOUNT,
    ADMIN_USER,
};

/// Access keys a user may hold at once (AWS and Eucalyptus allow two, for rotation).
const MAX_KEYS_PER_USER: usize = 2;

/// The account store. Cheap to clone (an `Arc` inside); share one per process.
#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    /// The cloud CA, when the store was opened with its keys folder: it issues user certificates.
    ca: Option<CloudCa>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("db", &self.inner.db.location())
            .finish_non_exhaustive()
    }
}

/// Whether an access key may sign requests. Disabling rather than deleting lets a user rotate
/// keys without breaking clients before they switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccessKeyStatus {
    /// The key authenticates requests.
    Active,
    /// The key is kept but refused.
    Inactive,
}

/// A user as the console's user list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Whether it may sign in and sign requests.
    pub enabled: bool,
}

/// An access key as listed (never with its secret), for Euare's `ListAccessKeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKeyInfo {
    /// The access key id.
    pub access_key_id: String,
    /// The user owning it.
    pub user_name: String,
    /// Active or inactive.
    pub status: AccessKeyStatus,
    /// When it was created.
    pub created: SystemTime,
}

/// A user's signing certificate as listed (Euare `ListSigningCertificates`) and as the CLC
/// checks bundle manifests with. Its private key is not kept by the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningCertificate {
    /// The certificate id: its serial number in uppercase hex.
    pub certificate_id: String,
    /// The user it belongs to.
    pub user_name: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Active or inactive (Euare's status values, shared with access keys).
    pub status: AccessKeyStatus,
    /// When it was issued.
    pub created: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    id: String,
    name: String,
    created: u64,
}

impl Versioned for AccountRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

#[derive(Serialize, Deserialize)]
struct NameRecord {
    account_id: String,
}

impl Versioned for NameRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

#[derive(Serialize, Deserialize)]
struct UserRecord {
    account_id: String,
    name: String,
    created: u64,
    /// Absent in records made before roles: see [`Role::of_legacy_user`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// A disabled user neither signs in nor signs requests (absent: enabled).
    #[serde(default, skip_serializing_if = "is_false")]
    disabled: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Versioned for UserRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    access_key_id: String,
    secret_access_key: String,
    account_id: String,
    account_name: String,
    user_name: String,
    status: AccessKeyStatus,
    created: u64,
    /// The owner's role, kept with the key so that a request's verification reads one
    /// record (a grant rewrites the user's keys). Absent in keys made before roles: the
    /// user record says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    /// The owner is disabled, kept with the key as the role is (absent: enabled).
    #[serde(default, skip_serializing_if = "is_false")]
    disabled: bool,
}

impl Versioned for KeyRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

#[derive(Serialize, Deserialize)]
struct IndexRecord {}

impl Versioned for IndexRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

#[derive(Serialize, Deserialize)]
struct CertRecord {
    certificate_id: String,
    user_name: String,
    cert_pem: String,
    status: AccessKeyStatus,
    created: u64,
}

impl Versioned for CertRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

impl CertRecord {
    fn into_info(self) -> SigningCertificate {
        SigningCertificate {
            certificate_id: self.certificate_id,
            user_name: self.user_name,
            cert_pem: self.cert_pem,
            status: self.status,
            created: UNIX_EPOCH + Duration::from_secs(self.created),
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn account_key(id: &str) -> String {
    format!("acct/{id}")
}
fn name_key(name: &str) -> String {
    format!("name/{name}")
}
fn user_key(account_id: &str, user: &str) -> String {
    format!("user/{account_id}/{user}")
}
fn access_key_key(akid: &str) -> String {
    format!("akey/{akid}")
}
fn user_keys_prefix(account_id: &str, user: &str) -> String {
    format!("ukey/{account_id}/{user}/")
}
fn user_certs_prefix(account_id: &str, user: &str) -> String {
    format!("cert/{account_id}/{user}/")
}

impl Identity {
    /// Opens (creating if needed) the store in `dir`, without a CA: it verifies requests and
    /// manages keys but issues no certificates (a Walrus alone, tests).
    pub fn open(dir: &Path) -> Result<Identity, IdentityError> {
        Ok(Identity::open_inner(Db::open(dir)?, None))
    }

    /// Opens the store in `dir` with the cloud CA kept in `keys_dir`, creating the CA on first
    /// start (slow: RSA key generation). Returns whether the CA was just created.
    pub fn open_with_ca(dir: &Path, keys_dir: &Path) -> Result<(Identity, bool), IdentityError> {
        Identity::in_db_with_ca(Db::open(dir)?, keys_dir)
    }

    /// The store kept in `db` (the cloud's PostgreSQL database, for cloud controllers that
    /// share it), with the cloud CA kept in `keys_dir` as [`Identity::open_with_ca`] does.
    pub fn in_db_with_ca(db: Db, keys_dir: &Path) -> Result<(Identity, bool), IdentityError> {
        let (ca, created) = CloudCa::open_or_create(keys_dir)?;
        Ok((Identity::open_inner(db, Some(ca)), created))
    }

    fn open_inner(db: Db, ca: Option<CloudCa>) -> Identity {
        Identity {
            inner: Arc::new(Inner { db, ca }),
        }
    }

    /// Creates account `eucalyptus` with user `admin` and an access key on first call;
    /// returns its credentials and whether they were just created.
    pub fn ensure_admin(&self) -> Result<(Credentials, bool), IdentityError> {
        let guard = self.lock();
        if let Some(account_id) = self.account_id_by_name(ADMIN_ACCOUNT)? {
            for akid in self.user_key_ids(&account_id, ADMIN_USER)? {
                let record = self.key_record(&akid)?;
                if record.status == AccessKeyStatus::Active {
                    return Ok((record.into_credentials(), false));
                }
            }
            // Every admin key was disabled or deleted: issue a fresh one.
            let creds = self.create_access_key_locked(&guard, &account_id, ADMIN_USER)?;
            return Ok((creds, true));
        }
        Ok((
            self.create_account_locked(&guard, ADMIN_ACCOUNT, None)?,
            true,
        ))
    }

    /// A new account with its `admin` user and a first access key.
    pub fn create_account(&self, name: &str) -> Result<Credentials, IdentityError> {
        validate_account_name(name)?;
        let guard = self.lock();
        self.create_account_locked(&guard, name, None)
    }

    /// A new account whose `admin` user signs in to the console with the password hashed as
    /// `password_phc` (see [`crate::hash_new_password`]) and gets mail at `email`: an approved
    /// application, activated. Account, user, key and login profile are written at once.
    pub fn create_account_with_login(
        &self,
        name: &str,
        password_phc: &str,
        email: &str,
    ) -> Result<Credentials, IdentityError> {
        validate_account_name(name)?;
        let guard = self.lock();
        self.create_account_locked(&guard, name, Some((password_phc, email)))
    }

    /// A new user (without keys) in an existing account.
    pub fn create_user(&self, account_id: &str, user_name: &str) -> Result<(), IdentityError> {
        validate_user_name(user_name)?;
        let _guard = self.lock();
        let mut batch = Batch::new();
        self.new_user(&mut batch, account_id, user_name, Role::User)?;
        self.write(batch)
    }

    /// The principal of a component of the cloud (`kind`, named `name`) in the cloud admin
    /// account, with a new access key: on first registration the user is made with the
    /// component's role; on a later one (its key file was lost) its old keys are deleted, so
    /// that only the newest key works. A user of that name that is not this kind of component
    /// is refused: a component's role is given only here.
    pub fn register_component(
        &self,
        kind: ComponentKind,
        name: &str,
    ) -> Result<Credentials, IdentityError> {
        validate_user_name(name)?;
        let guard = self.lock();
        let account_id = self
            .account_id_by_name(ADMIN_ACCOUNT)?
            .ok_or_else(|| IdentityError::NoSuchAccount(ADMIN_ACCOUNT.to_owned()))?;
        let mut batch = Batch::new();
        match self.user_record(&account_id, name)? {
            None => self.new_user(&mut batch, &account_id, name, Role::Component(kind))?,
            Some(user) if self.role_of(&user)? == Role::Component(kind) => {
                for akid in self.user_key_ids(&account_id, name)? {
                    batch.delete(&access_key_key(&akid));
                    batch.delete(&format!("{}{akid}", user_keys_prefix(&account_id, name)));
                }
            }
            Some(_) => return Err(IdentityError::UserExists(name.to_owned())),
        }
        let account = self.account_record(&account_id)?;
        let key = self.new_key_record(&account_id, &account.name, name, Role::Component(kind))?;
        let creds = key.to_credentials();
        put_key(&mut batch, &key);
        self.write(batch)?;
        drop(guard);
        Ok(creds)
    }

    /// Makes a user of the cloud admin account a cloud administrator, or no longer one. The
    /// `admin` user stays one (the cloud must keep an administrator), and components cannot
    /// be made administrators.
    pub fn set_cloud_admin(&self, user_name: &str, admin: bool) -> Result<(), IdentityError> {
        let _guard = self.lock();
        let account_id = self
            .account_id_by_name(ADMIN_ACCOUNT)?
            .ok_or_else(|| IdentityError::NoSuchAccount(ADMIN_ACCOUNT.to_owned()))?;
        let mut user = self
            .user_record(&account_id, user_name)?
            .ok_or_else(|| IdentityError::NoSuchUser(user_name.to_owned()))?;
        match self.role_of(&user)? {
            Role::Component(_) => {
                return Err(IdentityError::InvalidName(format!(
                    "{user_name} is one of the cloud's components, not a person: it cannot be an administrator."
                )))
            }
            _ if user_name == ADMIN_USER && !admin => {
                return Err(IdentityError::InvalidName(
                    "The admin user of the eucalyptus account is always a cloud administrator."
                        .into(),
                ))
            }
            _ => {}
        }
        let role = if admin { Role::CloudAdmin } else { Role::User };
        user.role = Some(role);
        let mut batch = Batch::new();
        batch.put(&user_key(&account_id, user_name), &user);
        for akid in self.user_key_ids(&account_id, user_name)? {
            let mut key = self.key_record(&akid)?;
            key.role = Some(role);
            batch.put(&access_key_key(&akid), &key);
        }
        self.write(batch)
    }

    /// The role of a user.
    pub fn user_role(&self, account_id: &str, user_name: &str) -> Result<Role, IdentityError> {
        let user = self
            .user_record(account_id, user_name)?
            .ok_or_else(|| IdentityError::NoSuchUser(user_name.to_owned()))?;
        self.role_of(&user)
    }

    fn user_record(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<UserRecord>, IdentityError> {
        Ok(self.inner.db.get(&user_key(account_id, user_name))?)
    }

    /// A user's role: recorded, or for records older than roles, what its name meant.
    fn role_of(&self, user: &UserRecord) -> Result<Role, IdentityError> {
        match user.role {
            Some(role) => Ok(role),
            None => {
                let account = self.account_record(&user.account_id)?;
                Ok(Role::of_legacy_user(&account.name, &user.name))
            }
        }
    }

    /// Adds a new user to `batch`; the caller holds the write lock.
    fn new_user(
        &self,
        batch: &mut Batch,
        account_id: &str,
        user_name: &str,
        role: Role,
    ) -> Result<(), IdentityError> {
        if !self.inner.db.contains(&account_key(account_id))? {
            return Err(IdentityError::NoSuchAccount(account_id.to_owned()));
        }
        if self.inner.db.contains(&user_key(account_id, user_name))? {
            return Err(IdentityError::UserExists(user_name.to_owned()));
        }
        batch.put(
            &user_key(account_id, user_name),
            &UserRecord {
                account_id: account_id.to_owned(),
                name: user_name.to_owned(),
                created: now_secs(),
                role: Some(role),
                disabled: false,
            },
        );
        Ok(())
    }

    /// A new active access key for an existing user (at most two per user).
    pub fn create_access_key(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Credentials, IdentityError> {
        let guard = self.lock();
        self.create_access_key_locked(&guard, account_id, user_name)
    }

    /// The user's access keys, without secrets.
    pub fn list_access_keys(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<AccessKeyInfo>, IdentityError> {
        self.require_user(account_id, user_name)?;
        let mut out = Vec::new();
        for akid in self.user_key_ids(account_id, user_name)? {
            let r = self.key_record(&akid)?;
            out.push(AccessKeyInfo {
                access_key_id: r.access_key_id,
                user_name: r.user_name,
                status: r.status,
                created: UNIX_EPOCH + Duration::from_secs(r.created),
            });
        }
        Ok(out)
    }

    /// Enables or disables one of the user's access keys.
    pub fn set_access_key_status(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
        status: AccessKeyStatus,
    ) -> Result<(), IdentityError> {
        let _guard = self.lock();
        let mut record = self.owned_key(account_id, user_name, access_key_id)?;
        record.status = status;
        let mut batch = Batch::new();
        batch.put(&access_key_key(access_key_id), &record);
        self.write(batch)
    }

    /// Deletes one of the user's access keys; requests signed with it fail from now on.
    pub fn delete_access_key(
        &self,
        account_id: &str,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<(), IdentityError> {
        let _guard = self.lock();
        self.owned_key(account_id, user_name, access_key_id)?;
        let mut batch = Batch::new();
        batch.delete(&access_key_key(access_key_id));
        batch.delete(&format!(
            "{}{access_key_id}",
            user_keys_prefix(account_id, user_name)
        ));
        self.write(batch)
    }

    /// The id of the account with this name.
    pub fn account_id(&self, account_name: &str) -> Result<Option<String>, IdentityError> {
        self.account_id_by_name(account_name)
    }

    /// Whether an account with this id exists: a grant may only name a real account.
    pub fn account_exists(&self, account_id: &str) -> Result<bool, IdentityError> {
        Ok(self.inner.db.contains(&account_key(account_id))?)
    }

    /// Every account, as (id, name), ordered by id.
    pub fn list_accounts(&self) -> Result<Vec<(String, String)>, IdentityError> {
        Ok(self
            .inner
            .db
            .scan::<AccountRecord>("acct/")?
            .into_iter()
            .map(|(_, r)| (r.id, r.name))
            .collect())
    }

    /// The user names of an account, ordered.
    pub fn list_users(&self, account_id: &str) -> Result<Vec<String>, IdentityError> {
        Ok(self
            .inner
            .db
            .scan::<UserRecord>(&format!("user/{account_id}/"))?
            .into_iter()
            .map(|(_, r)| r.name)
            .collect())
    }

    /// The users of an account with their roles and whether each is enabled, by name.
    pub fn users_of(&self, account_id: &str) -> Result<Vec<UserInfo>, IdentityError> {
        let mut out = Vec::new();
        for (_, user) in self
            .inner
            .db
            .scan::<UserRecord>(&format!("user/{account_id}/"))?
        {
            out.push(UserInfo {
                role: self.role_of(&user)?,
                enabled: !user.disabled,
                name: user.name,
            });
        }
        Ok(out)
    }

    /// Whether user `user_name` is enabled (a user that does not exist is not).
    pub fn user_enabled(&self, account_id: &str, user_name: &str) -> Result<bool, IdentityError> {
        Ok(self
            .user_record(account_id, user_name)?
            .is_some_and(|u| !u.disabled))
    }

    /// Disables a user (it can neither sign in nor sign requests: its keys are refused, kept)
    /// or enables it again. The cloud's own `admin` and the components cannot be disabled.
    pub fn set_user_enabled(
        &self,
        account_id: &str,
        user_name: &str,
        enabled: bool,
    ) -> Result<(), IdentityError> {
        let _guard = self.lock();
        let mut user = self
            .user_record(account_id, user_name)?
            .ok_or_else(|| IdentityError::NoSuchUser(user_name.to_owned()))?;
        let account = self.account_record(account_id)?;
        if !enabled {
            if account.name == ADMIN_ACCOUNT && user_name == ADMIN_USER {
                return Err(IdentityError::InvalidName(
                    "The admin user of the eucalyptus account cannot be disabled.".into(),
                ));
            }
            if matches!(self.role_of(&user)?, Role::Component(_)) {
                return Err(IdentityError::InvalidName(format!(
                    "{user_name} is one of the cloud's components, not a person."
                )));
            }
        }
        user.disabled = !enabled;
        let mut batch = Batch::new();
        batch.put(&user_key(account_id, user_name), &user);
        for akid in self.user_key_ids(account_id, user_name)? {
            let mut key = self.key_record(&akid)?;
            key.disabled = !enabled;
            batch.put(&access_key_key(&akid), &key);
        }
        self.write(batch)
    }

    /// Deletes a user with its access keys, signing certificates and console password
    /// (Eucalyptus' recursive `euare-userdel -r`). An account's `admin` user goes only with
    /// its account; components are deleted by re-registration, not here.
    pub fn delete_user(&self, account_id: &str, user_name: &str) -> Result<(), IdentityError> {
        let _guard = self.lock();
        let user = self
            .user_record(account_id, user_name)?
            .ok_or_else(|| IdentityError::NoSuchUser(user_name.to_owned()))?;
        if user_name == ADMIN_USER {
            return Err(IdentityError::InvalidName(
                "An account's admin user is deleted only with its account.".into(),
            ));
        }
        if matches!(self.role_of(&user)?, Role::Component(_)) {
            return Err(IdentityError::InvalidName(format!(
                "{user_name} is one of the cloud's components, not a person."
            )));
        }
        let mut batch = Batch::new();
        self.forget_user(&mut batch, account_id, user_name)?;
        self.write(batch)
    }

    /// Deletes an account with all its users, their keys, certificates and console
    /// passwords, in one write; its name is free again, its id never comes back. What the
    /// account owns elsewhere (instances, images, buckets) is the caller's to check first.
    /// The cloud's own `eucalyptus` account cannot be deleted.
    pub fn delete_account(&self, account_id: &str) -> Result<(), IdentityError> {
        let _guard = self.lock();
        let account = self.account_record(account_id)?;
        if account.name == ADMIN_ACCOUNT {
            return Err(IdentityError::InvalidName(format!(
                "The {ADMIN_ACCOUNT} account is the cloud's own: it cannot be deleted."
            )));
        }
        let mut batch = Batch::new();
        for user in self.list_users(account_id)? {
            self.forget_user(&mut batch, account_id, &user)?;
        }
        batch.delete(&account_key(account_id));
        batch.delete(&name_key(&account.name));
        self.write(batch)
    }

    /// Adds to `batch` the deletion of a user with its keys, certificates and login profile.
    fn forget_user(
        &self,
        batch: &mut Batch,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), IdentityError> {
        batch.delete(&user_key(account_id, user_name));
        for akid in self.user_key_ids(account_id, user_name)? {
            batch.delete(&access_key_key(&akid));
            batch.delete(&format!(
                "{}{akid}",
                user_keys_prefix(account_id, user_name)
            ));
        }
        let certs = user_certs_prefix(account_id, user_name);
        for id in self.inner.db.keys_after(&certs)? {
            batch.delete(&format!("{certs}{id}"));
        }
        batch.delete(&crate::login::login_key(account_id, user_name));
        Ok(())
    }

    /// The cloud CA, if the store was opened with it.
    pub fn cloud_ca(&self) -> Option<&CloudCa> {
        self.inner.ca.as_ref()
    }

    /// Issues the user a new RSA key and a certificate signed by the cloud CA, and registers
    /// the certificate as one of the user's signing certificates. The private key is returned
    /// once and not kept. Slow (key generation): call it off the async reactor.
    pub fn create_signing_certificate(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<(SigningCertificate, String), IdentityError> {
        let ca = self
            .cloud_ca()
            .ok_or(IdentityError::NoCertificateAuthority)?;
        self.require_user(account_id, user_name)?;
        let issued = ca.issue_user_certificate(account_id, user_name)?;
        let record = CertRecord {
            certificate_id: issued.serial_hex.to_ascii_uppercase(),
            user_name: user_name.to_owned(),
            cert_pem: issued.cert_pem,
            status: AccessKeyStatus::Active,
            created: now_secs(),
        };
        let _guard = self.lock();
        // The user may have been removed while the key was being generated.
        self.require_user(account_id, user_name)?;
        let key = format!(
            "{}{}",
            user_certs_prefix(account_id, user_name),
            record.certificate_id
        );
        let mut batch = Batch::new();
        batch.put(&key, &record);
        self.write(batch)?;
        Ok((record.into_info(), issued.key_pem))
    }

    /// The user's signing certificates, oldest id first.
    pub fn list_signing_certificates(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<SigningCertificate>, IdentityError> {
        self.require_user(account_id, user_name)?;
        Ok(self
            .inner
            .db
            .scan::<CertRecord>(&user_certs_prefix(account_id, user_name))?
            .into_iter()
            .map(|(_, record)| record.into_info())
            .collect())
    }

    /// The active certificates of every user of an account, PEM: a bundle manifest claiming
    /// this account must be signed by the key of one of them.
    pub fn certificates_of_account(&self, account_id: &str) -> Result<Vec<String>, IdentityError> {
        self.account_record(account_id)?;
        Ok(self
            .inner
            .db
            .scan::<CertRecord>(&format!("cert/{account_id}/"))?
            .into_iter()
            .filter(|(_, record)| record.status == AccessKeyStatus::Active)
            .map(|(_, record)| record.cert_pem)
            .collect())
    }

    /// An active access key of the user with its secret: the first active one, else a new one.
    /// Credential downloads hand it out, as Eucalyptus' did.
    pub fn active_access_key(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Credentials, IdentityError> {
        let guard = self.lock();
        self.require_user(account_id, user_name)?;
        for akid in self.user_key_ids(account_id, user_name)? {
            let record = self.key_record(&akid)?;
            if record.status == AccessKeyStatus::Active {
                return Ok(record.into_credentials());
            }
        }
        self.create_access_key_locked(&guard, account_id, user_name)
    }

    /// The write lock: check-then-write sequences hold it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner.db.exclusive()
    }

    /// The database, for the store's other files (login profiles).
    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    pub(crate) fn write(&self, batch: Batch) -> Result<(), IdentityError> {
        Ok(self.inner.db.write(batch)?)
    }

    fn account_id_by_name(&self, name: &str) -> Result<Option<String>, IdentityError> {
        Ok(self
            .inner
            .db
            .get::<NameRecord>(&name_key(name))?
            .map(|r| r.account_id))
    }

    fn account_record(&self, account_id: &str) -> Result<AccountRecord, IdentityError> {
        self.inner
            .db
            .get(&account_key(account_id))?
            .ok_or_else(|| IdentityError::NoSuchAccount(account_id.to_owned()))
    }

    pub(crate) fn require_user(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), IdentityError> {
        self.account_record(account_id)?;
        if !self.inner.db.contains(&user_key(account_id, user_name))? {
            return Err(IdentityError::NoSuchUser(user_name.to_owned()));
        }
        Ok(())
    }

    fn user_key_ids(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Vec<String>, IdentityError> {
        Ok(self
            .inner
            .db
            .keys_after(&user_keys_prefix(account_id, user_name))?)
    }

    fn key_record(&self, akid: &str) -> Result<KeyRecord, IdentityError> {
        self.inner
            .db
            .get(&access_key_key(akid))?
            .ok_or_else(|| IdentityError::NoSuchAccessKey(akid.to_owned()))
    }

    /// The key record, checking it belongs to this user (so one user cannot touch another's).
    fn owned_key(
        &self,
        account_id: &str,
        user_name: &str,
        akid: &str,
    ) -> Result<KeyRecord, IdentityError> {
        self.require_user(account_id, user_name)?;
        let record = self.key_record(akid)?;
        if record.account_id != account_id || record.user_name != user_name {
            return Err(IdentityError::NoSuchAccessKey(akid.to_owned()));
        }
        Ok(record)
    }

    fn create_account_locked(
        &self,
        _guard: &MutexGuard<'_, ()>,
        name: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Credentials, IdentityError> {
        if self.account_id_by_name(name)?.is_some() {
            return Err(IdentityError::AccountExists(name.to_owned()));
        }
        let account_id = loop {
            let id = random_digits(12)?;
            if !self.inner.db.contains(&account_key(&id))? {
                break id;
            }
        };
        let created = now_secs();
        let admin_role = if name == ADMIN_ACCOUNT {
            Role::CloudAdmin
        } else {
            Role::User
        };
        let key = self.new_key_record(&account_id, name, ADMIN_USER, admin_role)?;
        let mut batch = Batch::new();
        batch.put(
            &account_key(&account_id),
            &AccountRecord {
                id: account_id.clone(),
                name: name.to_owned(),
                created,
            },
        );
        batch.put(
            &name_key(name),
            &NameRecord {
                account_id: account_id.clone(),
            },
        );
        batch.put(
            &user_key(&account_id, ADMIN_USER),
            &UserRecord {
                account_id: account_id.clone(),
                name: ADMIN_USER.to_owned(),
                created,
                role: Some(admin_role),
                disabled: false,
            },
        );
        if let Some((phc, email)) = login {
            crate::login::put_login(&mut batch, &account_id, ADMIN_USER, phc, email)?;
        }
        let creds = key.to_credentials();
        put_key(&mut batch, &key);
        self.write(batch)?;
        Ok(creds)
    }

    fn create_access_key_locked(
        &self,
        _guard: &MutexGuard<'_, ()>,
        account_id: &str,
        user_name: &str,
    ) -> Result<Credentials, IdentityError> {
        self.require_user(account_id, user_name)?;
        if self.user_key_ids(account_id, user_name)?.len() >= MAX_KEYS_PER_USER {
            return Err(IdentityError::TooManyAccessKeys(MAX_KEYS_PER_USER));
        }
        let account = self.account_record(account_id)?;
        let role = self.user_role(account_id, user_name)?;
        let mut key = self.new_key_record(account_id, &account.name, user_name, role)?;
        key.disabled = self
            .user_record(account_id, user_name)?
            .is_some_and(|u| u.disabled);
        let creds = key.to_credentials();
        let mut batch = Batch::new();
        put_key(&mut batch, &key);
        self.write(batch)?;
        Ok(creds)
    }

    fn new_key_record(
        &self,
        account_id: &str,
        account_name: &str,
        user_name: &str,
        role: Role,
    ) -> Result<KeyRecord, IdentityError> {
        let access_key_id = loop {
            let id = format!("AKIA{}", random_string(16, BASE32)?);
            if !self.inner.db.contains(&access_key_key(&id))? {
                break id;
            }
        };
        Ok(KeyRecord {
            access_key_id,
            secret_access_key: random_string(40, ALPHANUMERIC)?,
            account_id: account_id.to_owned(),
            account_name: account_name.to_owned(),
            user_name: user_name.to_owned(),
            status: AccessKeyStatus::Active,
            created: now_secs(),
            role: Some(role),
            disabled: false,
        })
    }
}

fn put_key(batch: &mut Batch, key: &KeyRecord) {
    batch.put(
        &format!(
            "{}{}",
            user_keys_prefix(&key.account_id, &key.user_name),
            key.access_key_id
        ),
        &IndexRecord {},
    );
    batch.put(&access_key_key(&key.access_key_id), key);
}

impl KeyRecord {
    fn to_credentials(&self) -> Credentials {
        Credentials {
            account_id: self.account_id.clone(),
            account_name: self.account_name.clone(),
            user_name: self.user_name.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }

    fn into_credentials(self) -> Credentials {
        self.to_credentials()
    }
}

impl SecretSource for Identity {
    /// A storage failure reads as an unknown key: the request is refused, never let through.
    fn secret(&self, access_key_id: &str) -> Option<(Principal, String)> {
        if access_key_id.is_empty() || access_key_id.len() > 128 {
            return None;
        }
        let record = self.key_record(access_key_id).ok()?;
        if record.status != AccessKeyStatus::Active || record.disabled {
            return None;
        }
        let role = match record.role {
            Some(role) => role,
            None => self.user_role(&record.account_id, &record.user_name).ok()?,
        };
        let principal = Principal {
            role,
            account_id: record.account_id,
            account_name: record.account_name,
            user_name: record.user_name,
            access_key_id: record.access_key_id,
        };
        Some((principal, record.secret_access_key))
    }
}

const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const DIGITS: &[u8] = b"0123456789";

/// `len` characters drawn uniformly from `alphabet` with the operating system's CSPRNG
/// (rejection sampling, so no character is favoured).
fn random_string(len: usize, alphabet: &[u8]) -> Result<String, IdentityError> {
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng
            .try_fill_bytes(&mut buf)
            .map_err(|_| IdentityError::Random)?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % n]));
            }
        }
    }
    Ok(out)
}

fn random_digits(len: usize) -> Result<String, IdentityError> {
    random_string(len, DIGITS)
}

/// Account names: 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a
/// hyphen, not all digits (that would read as an account id).
/// Account names as Eucalyptus allows them: 1 to 63 lowercase letters, digits and hyphens,
/// not starting or ending with a hyphen, not all digits (an account id is).
pub fn validate_account_name(name: &str) -> Result<(), IdentityError> {
    let bad = |why: &str| {
        Err(IdentityError::InvalidName(format!(
            "Invalid account name '{name}': {why}."
        )))
    };
    if name.is_empty() || name.len() > 63 {
        return bad("it must be 1 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("use only lowercase letters, digits and hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it cannot start or end with a hyphen");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return bad("it cannot be all digits");
    }
    Ok(())
}

/// User names as IAM allows them: 1 to 64 of `A-Za-z0-9+=,.@_-`.
fn validate_user_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(format!(
            "Invalid user name '{name}': use 1 to 64 letters, digits and +=,.@_- characters."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_is_created_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (creds, created) = {
            let id = Identity::open(dir.path()).unwrap();
            let (creds, created) = id.ensure_admin().unwrap();
            let (again, created_again) = id.ensure_admin().unwrap();
            assert!(!created_again);
            assert_eq!(creds, again);
            (creds, created)
        };
        assert!(created);
        assert_eq!(creds.account_name, "eucalyptus");
        assert_eq!(creds.user_name, "admin");
        assert_eq!(creds.account_id.len(), 12);
        assert!(creds.account_id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(creds.access_key_id.len(), 20);
        assert!(creds.access_key_id.starts_with("AKIA"));
        assert_eq!(creds.secret_access_key.len(), 40);

        let id = Identity::open(dir.path()).unwrap();
        let (reopened, created) = id.ensure_admin().unwrap();
        assert!(!created);
        assert_eq!(reopened, creds);
        let (principal, secret) = id.secret(&creds.access_key_id).unwrap();
        assert_eq!(secret, creds.secret_access_key);
        assert!(principal.is_cloud_admin());
        assert_eq!(principal.account_id, creds.account_id);
    }

    #[test]
    fn roles_are_recorded_not_read_from_names() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(dir.path()).unwrap();
        let (admin, _) = id.ensure_admin().unwrap();
        let euca = admin.account_id.clone();
        let role = |akid: &str| id.secret(akid).unwrap().0.role;
        assert_eq!(role(&admin.access_key_id), Role::CloudAdmin);

        // A user of the admin account named like a component is only a user.
        id.create_user(&euca, "nc-fake").unwrap();
        let fake = id.create_access_key(&euca, "nc-fake").unwrap();
        assert_eq!(role(&fake.access_key_id), Role::User);
        assert!(matches!(
            id.register_component(ComponentKind::NodeController, "nc-fake"),
            Err(IdentityError::UserExists(_))
        ));

        // A component registered twice keeps one working key, the newest.
        let nc = id
            .register_component(ComponentKind::NodeController, "nc-host1")
            .unwrap();
        assert_eq!(
            role(&nc.access_key_id),
            Role::Component(ComponentKind::NodeController)
        );
        let again = id
            .register_component(ComponentKind::NodeController, "nc-host1")
            .unwrap();
        assert!(id.secret(&nc.access_key_id).is_none());
        assert!(id.secret(&again.access_key_id).is_some());
        assert!(matches!(
            id.register_component(ComponentKind::Walrus, "nc-host1"),
            Err(IdentityError::UserExists(_))
        ));

        // Administrators are made by grant, in the admin account only, never components.
        id.create_user(&euca, "ops").unwrap();
        let ops = id.create_access_key(&euca, "ops").unwrap();
        assert_eq!(role(&ops.access_key_id), Role::User);
        id.set_cloud_admin("ops", true).unwrap();
        assert_eq!(role(&ops.access_key_id), Role::CloudAdmin);
        id.set_cloud_admin("ops", false).unwrap();
        assert_eq!(role(&ops.access_key_id), Role::User);
        assert!(id.set_cloud_admin("nc-host1", true).is_err());
        assert!(id.set_cloud_admin(ADMIN_USER, false).is_err());
        assert!(matches!(
            id.set_cloud_admin("nobody", true),
            Err(IdentityError::NoSuchUser(_))
        ));
        let alice = id.create_account("alice").unwrap();
        assert_eq!(role(&alice.access_key_id), Role::User);

        // Records from before roles read as their names meant.
        let legacy: UserRecord = records::decode(
            "user/x/clc",
            format!(r#"{{"v":1,"account_id":"{euca}","name":"clc","created":0}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(legacy.role, None);
        assert_eq!(
            id.role_of(&legacy).unwrap(),
            Role::Component(ComponentKind::CloudController)
        );
    }

    /// Records exactly as the store has written them since format version 1, put straight
    /// into RocksDB, read back; a record rewritten keeps that shape.
    #[test]
    fn records_of_format_version_1_read_and_are_rewritten_in_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        let acct = "123456789012";
        let key = |status: &str| {
            format!(
                r#"{{"v":1,"access_key_id":"AKIAOLDKEY","secret_access_key":"s3cr3t","account_id":"{acct}","account_name":"alice","user_name":"admin","status":"{status}","created":1700000000,"role":"user"}}"#
            )
        };
        {
            let db = rocksdb::DB::open_default(dir.path()).unwrap();
            for (k, v) in [
                (
                    format!("acct/{acct}"),
                    format!(r#"{{"v":1,"id":"{acct}","name":"alice","created":1700000000}}"#),
                ),
                (
                    "name/alice".to_owned(),
                    format!(r#"{{"v":1,"account_id":"{acct}"}}"#),
                ),
                (
                    format!("user/{acct}/admin"),
                    format!(
                        r#"{{"v":1,"account_id":"{acct}","name":"admin","created":1700000000,"role":"user"}}"#
                    ),
                ),
                (
                    format!("user/{acct}/builder"),
                    format!(
                        r#"{{"v":1,"account_id":"{acct}","name":"builder","created":1700000000}}"#
                    ),
                ),
                ("akey/AKIAOLDKEY".to_owned(), key("Active")),
                (format!("ukey/{acct}/admin/AKIAOLDKEY"), r#"{"v":1}"#.to_owned()),
                (
                    format!("cert/{acct}/admin/0A1B"),
                    r#"{"v":1,"certificate_id":"0A1B","user_name":"admin","cert_pem":"PEM","status":"Active","created":1700000000}"#.to_owned(),
                ),
            ] {
                db.put(k, v).unwrap();
            }
        }
        {
            let id = Identity::open(dir.path()).unwrap();
            let (principal, secret) = id.secret("AKIAOLDKEY").unwrap();
            assert_eq!(secret, "s3cr3t");
            assert_eq!(principal.role, Role::User);
            assert_eq!(principal.account_name, "alice");
            assert_eq!(id.account_id("alice").unwrap().as_deref(), Some(acct));
            assert_eq!(
                id.list_accounts().unwrap(),
                vec![(acct.to_owned(), "alice".to_owned())]
            );
            assert_eq!(id.list_users(acct).unwrap(), vec!["admin", "builder"]);
            assert_eq!(id.user_role(acct, "builder").unwrap(), Role::User);
            let keys = id.list_access_keys(acct, "admin").unwrap();
            assert_eq!(keys.len(), 1);
            assert_eq!(
                keys[0].created,
                UNIX_EPOCH + Duration::from_secs(1_700_000_000)
            );
            let certs = id.list_signing_certificates(acct, "admin").unwrap();
            assert_eq!(certs[0].certificate_id, "0A1B");
            assert_eq!(id.certificates_of_account(acct).unwrap(), vec!["PEM"]);
            id.set_access_key_status(acct, "admin", "AKIAOLDKEY", AccessKeyStatus::Inactive)
                .unwrap();
        }
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        let stored = db.get("akey/AKIAOLDKEY").unwrap().unwrap();
        assert_eq!(String::from_utf8(stored).unwrap(), key("Inactive"));
    }

    #[test]
    fn accounts_have_unique_valid_names() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(dir.path()).unwrap();
        id.ensure_admin().unwrap();
        let alice = id.create_account("alice").unwrap();
        assert_eq!(alice.account_name, "alice");
        assert_eq!(alice.user_name, "admin");
        let (principal, _) = id.secret(&alice.access_key_id).unwrap();
        assert!(!principal.is_cloud_admin());
        let dup = id.create_account("alice").unwrap_err();
        assert!(matches!(dup, IdentityError::AccountExists(_)));
        assert_eq!(dup.euare_code(), "EntityAlreadyExists");
        assert!(matches!(
            id.create_account("eucalyptus"),
            Err(IdentityError::AccountExists(_))
        ));
        for bad in [
            "",
            "Alice",
            "a b",
            "-x",
            "x-",
            "123456789012",
            "a/b",
            &"a".repeat(64),
        ] {
            let err = id.create_account(bad).unwrap_err();
            assert!(matches!(err, IdentityError::InvalidName(_)), "{bad}: {err}");
            assert_eq!(err.euare_code(), "ValidationError");
        }
        let accounts = id.list_accounts().unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            id.account_id("alice").unwrap(),
            Some(alice.account_id.clone())
        );
        assert_ne!(
            alice.account_id,
            id.account_id("eucalyptus").unwrap().unwrap()
        );
        assert!(id.account_exists(&alice.account_id).unwrap());
        assert!(!id.account_exists(&"f".repeat(64)).unwrap());
        assert!(!id.account_exists("").unwrap());
    }

    #[test]
    fn access_keys_can_be_listed_disabled_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(dir.path()).unwrap();
        let bob = id.create_account("bob").unwrap();
        let acct = bob.account_id.clone();
        let second = id.create_access_key(&acct, "admin").unwrap();
        assert!(matches!(
            id.create_access_key(&acct, "admin"),
            Err(IdentityError::TooManyAccessKeys(2))
        ));
        assert_eq!(id.list_access_keys(&acct, "admin").unwrap().len(), 2);

        id.set_access_key_status(
            &acct,
            "admin",
            &second.access_key_id,
            AccessKeyStatus::Inactive,
        )
        .unwrap();
        assert!(id.secret(&second.access_key_id).is_none());
        assert!(id.secret(&bob.access_key_id).is_some());
        id.set_access_key_status(
            &acct,
            "admin",
            &second.access_key_id,
            AccessKeyStatus::Active,
        )
        .unwrap();
        assert!(id.secret(&second.access_key_id).is_some());

        id.delete_access_key(&acct, "admin", &second.access_key_id)
            .unwrap();
        assert!(id.secret(&second.access_key_id).is_none());
        let keys = id.list_access_keys(&acct, "admin").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].access_key_id, bob.access_key_id);
        assert_eq!(keys[0].status, AccessKeyStatus::Active);

        // Another account cannot touch bob's key.
        let carol = id.create_account("carol").unwrap();
        assert!(matches!(
            id.delete_access_key(&carol.account_id, "admin", &bob.access_key_id),
            Err(IdentityError::NoSuchAccessKey(_))
        ));

        id.create_user(&acct, "builder").unwrap();
        assert!(matches!(
            id.create_user(&acct, "builder"),
            Err(IdentityError::UserExists(_))
        ));
        assert!(matches!(
            id.create_user(&acct, "bad name"),
            Err(IdentityError::InvalidName(_))
        ));
        let builder = id.create_access_key(&acct, "builder").unwrap();
        assert_eq!(
            id.secret(&builder.access_key_id).unwrap().0.user_name,
            "builder"
        );
        assert_eq!(
            id.list_users(&acct).unwrap(),
            vec!["admin".to_owned(), "builder".to_owned()]
        );
        assert!(matches!(
            id.create_access_key(&acct, "nobody"),
            Err(IdentityError::NoSuchUser(_))
        ));
    }

    #[test]
    fn admin_gets_a_new_key_when_all_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::open(dir.path()).unwrap();
        let (first, _) = id.ensure_admin().unwrap();
        id.delete_access_key(&first.account_id, "admin", &first.access_key_id)
            .unwrap();
        let (second, created) = id.ensure_admin().unwrap();
        assert!(created);
        assert_ne!(first.access_key_id, second.access_key_id);
        assert_eq!(first.account_id, second.account_id);
    }

    #[test]
    fn random_strings_use_their_alphabet() {
        let s = random_string(1000, BASE32).unwrap();
        assert!(s.bytes().all(|b| BASE32.contains(&b)));
        assert_ne!(
            random_string(40, ALPHANUMERIC).unwrap(),
            random_string(40, ALPHANUMERIC).unwrap()
        );
    }
}
