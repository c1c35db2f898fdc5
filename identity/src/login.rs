//! Login profiles: the passwords people sign in to the web console with, beside the access
//! keys programs sign requests with (IAM's login profile).
//!
//! Kept in the account store under `login/<account id>/<user name>`: an argon2id hash in PHC
//! form (never the password), whether the password must be changed at the next sign-in, and
//! the user's e-mail address. The cloud admin's profile is made with the well-known password
//! `admin` on first start and must be changed before anything else, as Eucalyptus' console did.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::rngs::OsRng;
use records::{Batch, Envelope, Versioned};
use serde::{Deserialize, Serialize};

use crate::store::now_secs;
use crate::{Identity, IdentityError, Role, ADMIN_ACCOUNT, ADMIN_USER};

/// The cloud admin's password until it is changed at the first sign-in.
pub const DEFAULT_ADMIN_PASSWORD: &str = "admin";

/// The shortest password a person may choose (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LENGTH: usize = 8;

/// Longer passwords are refused: hashing megabytes on a client's request costs the server.
const MAX_PASSWORD_LENGTH: usize = 256;

#[derive(Serialize, Deserialize)]
struct LoginRecord {
    /// The argon2id hash, PHC string.
    password: String,
    /// The password was set by someone else (or is the default): change it before anything.
    must_change: bool,
    /// When the password was last set.
    changed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

impl Versioned for LoginRecord {
    const ENVELOPE: Envelope = Envelope::Flat;
    const VERSION: u32 = 1;
}

pub(crate) fn login_key(account_id: &str, user: &str) -> String {
    format!("login/{account_id}/{user}")
}

/// A person whose password was right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The account's id.
    pub account_id: String,
    /// The account's name.
    pub account_name: String,
    /// The user's name in the account.
    pub user_name: String,
    /// What the user may do.
    pub role: Role,
    /// The password must be changed before anything else.
    pub must_change: bool,
    /// The user's e-mail address, when known.
    pub email: Option<String>,
}

impl SignedIn {
    /// The principal the person acts as: the same rules decide what the console may do for
    /// them as for their signed requests. Signed in by password, it names no access key.
    pub fn principal(&self) -> crate::Principal {
        crate::Principal {
            account_id: self.account_id.clone(),
            account_name: self.account_name.clone(),
            user_name: self.user_name.clone(),
            access_key_id: String::new(),
            role: self.role,
        }
    }
}

fn hash(password: &str) -> Result<String, IdentityError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| IdentityError::PasswordHash(e.to_string()))
}

fn verify(password: &str, phc: &str) -> Result<bool, IdentityError> {
    let parsed = PasswordHash::new(phc).map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash no password is checked against successfully in practice, verified when the user is
/// unknown so that a wrong user name takes as long as a wrong password (no enumeration by
/// timing).
fn decoy() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash("koala-decoy-password").unwrap_or_default())
}

/// Checks a new password against the rules: long enough, not absurdly long, not the user's
/// name, not the default admin password.
fn check_rules(user_name: &str, password: &str) -> Result<(), IdentityError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LENGTH {
        return Err(IdentityError::PasswordPolicy(format!(
            "The password must be at least {MIN_PASSWORD_LENGTH} characters long."
        )));
    }
    if password.len() > MAX_PASSWORD_LENGTH {
        return Err(IdentityError::PasswordPolicy(format!(
            "The password must be at most {MAX_PASSWORD_LENGTH} bytes long."
        )));
    }
    if password.eq_ignore_ascii_case(user_name) {
        return Err(IdentityError::PasswordPolicy(
            "The password must not be the user name.".into(),
        ));
    }
    Ok(())
}

/// Adds to `batch` the login profile of a user whose password (hashed, `phc`) they chose.
pub(crate) fn put_login(
    batch: &mut Batch,
    account_id: &str,
    user_name: &str,
    phc: &str,
    email: &str,
) -> Result<(), IdentityError> {
    PasswordHash::new(phc).map_err(|e| IdentityError::PasswordHash(e.to_string()))?;
    batch.put(
        &login_key(account_id, user_name),
        &LoginRecord {
            password: phc.to_owned(),
            must_change: false,
            changed: now_secs(),
            email: Some(email.to_owned()),
        },
    );
    Ok(())
}

/// Checks a password someone chooses for `user_name` against the rules and hashes it
/// (argon2id, slow: off the reactor), to be kept until the user exists (an application
/// waiting for approval keeps the hash, never the password).
pub fn hash_new_password(user_name: &str, password: &str) -> Result<String, IdentityError> {
    check_rules(user_name, password)?;
    if password == DEFAULT_ADMIN_PASSWORD {
        return Err(IdentityError::PasswordPolicy(
            "The password must not be the default one.".into(),
        ));
    }
    hash(password)
}

impl Identity {
    /// Gives the cloud admin (`eucalyptus`/`admin`) the default password, to be changed at
    /// the first sign-in, unless it has a login profile already. Returns whether the admin
    /// still has to choose a password (so the daemon can say how to sign in).
    pub fn ensure_admin_login(&self) -> Result<bool, IdentityError> {
        let account_id = self
            .account_id(ADMIN_ACCOUNT)?
            .ok_or_else(|| IdentityError::NoSuchAccount(ADMIN_ACCOUNT.to_owned()))?;
        let key = login_key(&account_id, ADMIN_USER);
        let _guard = self.lock();
        if let Some(record) = self.db().get::<LoginRecord>(&key)? {
            return Ok(record.must_change);
        }
        let mut batch = Batch::new();
        batch.put(
            &key,
            &LoginRecord {
                password: hash(DEFAULT_ADMIN_PASSWORD)?,
                must_change: true,
                changed: now_secs(),
                email: None,
            },
        );
        self.write(batch)?;
        Ok(true)
    }

    /// Checks `password` for user `user_name` of the account named `account_name`: the person
    /// signed in, or `None` for any wrong name, user or password alike (slow: argon2; run it
    /// off the reactor). A user without a login profile, or disabled, cannot sign in.
    pub fn check_password(
        &self,
        account_name: &str,
        user_name: &str,
        password: &str,
    ) -> Result<Option<SignedIn>, IdentityError> {
        if password.len() > MAX_PASSWORD_LENGTH {
            return Ok(None);
        }
        let found = match self.account_id(account_name)? {
            Some(account_id) if self.user_enabled(&account_id, user_name)? => self
                .db()
                .get::<LoginRecord>(&login_key(&account_id, user_name))?
                .map(|record| (account_id, record)),
            _ => None,
        };
        let Some((account_id, record)) = found else {
            let _ = verify(password, decoy());
            return Ok(None);
        };
        if !verify(password, &record.password)? {
            return Ok(None);
        }
        Ok(Some(SignedIn {
            role: self.user_role(&account_id, user_name)?,
            account_id,
            account_name: account_name.to_owned(),
            user_name: user_name.to_owned(),
            must_change: record.must_change,
            email: record.email,
        }))
    }

    /// Sets a user's password (slow: argon2). `must_change` when someone else chose it (an
    /// administrator's form), so the user changes it at the next sign-in. The rules are
    /// checked; a new password equal to the current one is refused when the user is made to
    /// change it.
    pub fn set_password(
        &self,
        account_id: &str,
        user_name: &str,
        password: &str,
        must_change: bool,
    ) -> Result<(), IdentityError> {
        let phc = hash_new_password(user_name, password)?;
        let key = login_key(account_id, user_name);
        let _guard = self.lock();
        self.require_user(account_id, user_name)?;
        let old = self.db().get::<LoginRecord>(&key)?;
        if let Some(old) = &old {
            if old.must_change && !must_change && verify(password, &old.password)? {
                return Err(IdentityError::PasswordPolicy(
                    "Choose a password other than the one you were given.".into(),
                ));
            }
        }
        let mut batch = Batch::new();
        batch.put(
            &key,
            &LoginRecord {
                password: phc,
                must_change,
                changed: now_secs(),
                email: old.and_then(|o| o.email),
            },
        );
        self.write(batch)
    }

    /// The e-mail address of a user, when their login profile has one.
    pub fn email_of(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<String>, IdentityError> {
        Ok(self
            .db()
            .get::<LoginRecord>(&login_key(account_id, user_name))?
            .and_then(|r| r.email))
    }

    /// Records the e-mail address of a user who has a login profile (the console sends it the
    /// user's mail). The address is checked only for shape: it is the user's to give.
    pub fn set_email(
        &self,
        account_id: &str,
        user_name: &str,
        email: &str,
    ) -> Result<(), IdentityError> {
        let email = email.trim();
        if !plausible_email(email) {
            return Err(IdentityError::InvalidName(format!(
                "{email:?} is not an e-mail address."
            )));
        }
        let key = login_key(account_id, user_name);
        let _guard = self.lock();
        let mut record = self
            .db()
            .get::<LoginRecord>(&key)?
            .ok_or_else(|| IdentityError::NoSuchUser(user_name.to_owned()))?;
        record.email = Some(email.to_owned());
        let mut batch = Batch::new();
        batch.put(&key, &record);
        self.write(batch)
    }
}

/// Whether `email` is `local@domain.tld`-shaped, printable, without spaces, and no longer than
/// SMTP allows (RFC 5321): the check forms make before mail is sent there.
pub fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | ',' | ';'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Identity, String) {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::open(dir.path()).unwrap();
        identity.ensure_admin().unwrap();
        let admin = identity.account_id(ADMIN_ACCOUNT).unwrap().unwrap();
        (dir, identity, admin)
    }

    #[test]
    fn the_admin_signs_in_with_the_default_until_changed() {
        let (_dir, identity, admin) = store();
        assert!(identity.ensure_admin_login().unwrap());
        let first = identity
            .check_password(ADMIN_ACCOUNT, ADMIN_USER, "admin")
            .unwrap()
            .unwrap();
        assert!(first.must_change);
        assert_eq!(first.role, Role::CloudAdmin);
        let same = identity.set_password(&admin, ADMIN_USER, "admin", false);
        assert_eq!(same.unwrap_err().euare_code(), "PasswordPolicyViolation");
        identity
            .set_password(&admin, ADMIN_USER, "a much better one", false)
            .unwrap();
        assert!(!identity.ensure_admin_login().unwrap());
        assert_eq!(
            identity
                .check_password(ADMIN_ACCOUNT, ADMIN_USER, "admin")
                .unwrap(),
            None
        );
        let signed = identity
            .check_password(ADMIN_ACCOUNT, ADMIN_USER, "a much better one")
            .unwrap()
            .unwrap();
        assert!(!signed.must_change);
    }

    #[test]
    fn unknown_names_and_short_passwords_are_refused() {
        let (_dir, identity, admin) = store();
        identity.ensure_admin_login().unwrap();
        assert_eq!(
            identity
                .check_password("nobody", ADMIN_USER, "admin")
                .unwrap(),
            None
        );
        assert_eq!(
            identity
                .check_password(ADMIN_ACCOUNT, "ghost", "admin")
                .unwrap(),
            None
        );
        let short = identity.set_password(&admin, ADMIN_USER, "short", false);
        assert!(matches!(short, Err(IdentityError::PasswordPolicy(_))));
        assert!(identity.set_email(&admin, ADMIN_USER, "not mail").is_err());
        identity
            .set_email(&admin, ADMIN_USER, "root@cloud.example")
            .unwrap();
        identity
            .set_password(&admin, ADMIN_USER, "correct horse", false)
            .unwrap();
        let signed = identity
            .check_password(ADMIN_ACCOUNT, ADMIN_USER, "correct horse")
            .unwrap()
            .unwrap();
        assert_eq!(signed.email.as_deref(), Some("root@cloud.example"));
    }

    #[test]
    fn a_disabled_user_neither_signs_in_nor_signs_requests() {
        use crate::SecretSource;
        let (_dir, identity, admin) = store();
        let alice = identity.create_account("alice").unwrap();
        let phc = hash_new_password("alice", "alice's password").unwrap();
        let mut batch = Batch::new();
        put_login(&mut batch, &alice.account_id, ADMIN_USER, &phc, "a@b.test").unwrap();
        identity.write(batch).unwrap();
        let signs_in = || {
            identity
                .check_password("alice", ADMIN_USER, "alice's password")
                .unwrap()
                .is_some()
        };
        assert!(signs_in());
        identity
            .set_user_enabled(&alice.account_id, ADMIN_USER, false)
            .unwrap();
        assert!(!signs_in());
        assert!(identity.secret(&alice.access_key_id).is_none());
        let later = identity
            .create_access_key(&alice.account_id, ADMIN_USER)
            .unwrap();
        assert!(
            identity.secret(&later.access_key_id).is_none(),
            "keys made while disabled"
        );
        identity
            .set_user_enabled(&alice.account_id, ADMIN_USER, true)
            .unwrap();
        assert!(signs_in());
        assert!(identity.secret(&later.access_key_id).is_some());
        assert!(identity
            .set_user_enabled(&admin, ADMIN_USER, false)
            .is_err());
    }

    #[test]
    fn a_deleted_account_leaves_nothing_and_frees_its_name() {
        use crate::SecretSource;
        let (_dir, identity, admin) = store();
        let bob = identity.create_account("bob").unwrap();
        identity.create_user(&bob.account_id, "builder").unwrap();
        let builder = identity
            .create_access_key(&bob.account_id, "builder")
            .unwrap();
        let phc = hash_new_password("bob", "bob's password").unwrap();
        let mut batch = Batch::new();
        put_login(&mut batch, &bob.account_id, ADMIN_USER, &phc, "b@b.test").unwrap();
        identity.write(batch).unwrap();
        let carol = identity.create_account("carol").unwrap();

        identity.delete_account(&bob.account_id).unwrap();
        assert!(identity.secret(&bob.access_key_id).is_none());
        assert!(identity.secret(&builder.access_key_id).is_none());
        assert!(identity
            .check_password("bob", ADMIN_USER, "bob's password")
            .unwrap()
            .is_none());
        assert_eq!(identity.account_id("bob").unwrap(), None);
        assert!(!identity.account_exists(&bob.account_id).unwrap());
        assert!(identity.list_users(&bob.account_id).unwrap().is_empty());
        // Nothing of bob is left in the store: no key with its id in it.
        let left: Vec<String> = identity
            .db()
            .keys_after("")
            .unwrap()
            .into_iter()
            .filter(|k| k.contains(&bob.account_id))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // Others are untouched; the name can be taken again, with a new id.
        assert!(identity.secret(&carol.access_key_id).is_some());
        let again = identity.create_account("bob").unwrap();
        assert_ne!(again.account_id, bob.account_id);
        assert!(matches!(
            identity.delete_account(&bob.account_id),
            Err(IdentityError::NoSuchAccount(_))
        ));
        assert!(identity.delete_account(&admin).is_err(), "the cloud's own");
        assert!(identity.account_exists(&admin).unwrap());
    }
}
