//! Where verifiers get what checking a signature takes, without secrets leaving the key store.
//!
//! A SigV4 signature is checked with the signing key of its scope (`date/region/service`),
//! derived from the secret by a one-way HMAC chain: it proves requests of that one day,
//! region and service and nothing else. A SigV2 signature is an HMAC of the secret itself, so
//! the key store checks it and answers yes or no. A [`CredentialSource`] answers those two
//! questions; the identity store answers them from its secrets ([`SecretSource`]), a component
//! on another host asks the cloud controller, which answers each question it may.
//!
//! A remote verifier cannot wait in the middle of a verification, so verification runs twice:
//! a dry run records the questions a request asks ([`questions_of`]), the answers are fetched,
//! and the real run reads them ([`Answered`]).

use std::cell::RefCell;

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::{AuthError, Authenticated, Principal};

/// The scope of a SigV4 signing key, as a request's credential names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SigningScope {
    /// `YYYYMMDD`.
    pub date: String,
    /// The region signed for (any: euca2ools invents one).
    pub region: String,
    /// The service signed for (`s3`, `ec2`, `koala` for internal calls).
    pub service: String,
}

/// The HMAC a SigV2 signature is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum V2Algorithm {
    /// `HmacSHA1` (S3's only one, the Query APIs' older one).
    HmacSha1,
    /// `HmacSHA256`.
    HmacSha256,
}

impl V2Algorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            V2Algorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            V2Algorithm::HmacSha256 => hmac::HMAC_SHA256,
        }
    }
}

/// What verifiers ask of a key store.
pub trait CredentialSource {
    /// The owner of the active key `access_key_id` and its SigV4 signing key for `scope`.
    fn signing_key(
        &self,
        access_key_id: &str,
        scope: &SigningScope,
    ) -> Option<(Principal, [u8; 32])>;

    /// The owner of the active key `access_key_id`, and whether `signature` is that key's
    /// `algorithm` HMAC of `string_to_sign`.
    fn check_v2(
        &self,
        access_key_id: &str,
        algorithm: V2Algorithm,
        string_to_sign: &str,
        signature: &[u8],
    ) -> Option<(Principal, bool)>;
}

/// A key store that holds the secrets (the identity store, test fixtures): it answers every
/// question of [`CredentialSource`] itself.
pub trait SecretSource {
    /// The owner of the active key `access_key_id` and its secret.
    fn secret(&self, access_key_id: &str) -> Option<(Principal, String)>;
}

impl<T: SecretSource + ?Sized> CredentialSource for T {
    fn signing_key(
        &self,
        access_key_id: &str,
        scope: &SigningScope,
    ) -> Option<(Principal, [u8; 32])> {
        let (principal, secret) = self.secret(access_key_id)?;
        let key = crate::sigv4::signing_key(&secret, &scope.date, &scope.region, &scope.service);
        Some((principal, key))
    }

    fn check_v2(
        &self,
        access_key_id: &str,
        algorithm: V2Algorithm,
        string_to_sign: &str,
        signature: &[u8],
    ) -> Option<(Principal, bool)> {
        let (principal, secret) = self.secret(access_key_id)?;
        let key = hmac::Key::new(algorithm.ring(), secret.as_bytes());
        let matches = hmac::verify(&key, string_to_sign.as_bytes(), signature).is_ok();
        Some((principal, matches))
    }
}

/// One question a verification asks of its key store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyQuestion {
    /// SigV4: the signing key of a scope.
    SigningKey {
        /// The access key id.
        access_key_id: String,
        /// The scope the request is signed for.
        scope: SigningScope,
    },
    /// SigV2: whether a signature is the key's.
    V2Signature {
        /// The access key id.
        access_key_id: String,
        /// The HMAC used.
        algorithm: V2Algorithm,
        /// What was signed.
        string_to_sign: String,
        /// The signature, base64.
        signature: String,
    },
}

impl KeyQuestion {
    /// The access key the question is about.
    pub fn access_key_id(&self) -> &str {
        match self {
            KeyQuestion::SigningKey { access_key_id, .. }
            | KeyQuestion::V2Signature { access_key_id, .. } => access_key_id,
        }
    }
}

/// A key store's answer to a [`KeyQuestion`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyAnswer {
    /// No such active key (or none the asker may learn of).
    Unknown,
    /// SigV4: the key's owner and the scope's signing key (hex).
    SigningKey {
        /// Who owns the key.
        principal: Principal,
        /// The signing key of the scope asked for, hex.
        signing_key: String,
    },
    /// SigV2: the key's owner and whether the signature is its.
    V2Signature {
        /// Who owns the key.
        principal: Principal,
        /// Whether the signature matches.
        matches: bool,
    },
}

/// How `source` answers `question`.
pub fn answer(source: &dyn CredentialSource, question: &KeyQuestion) -> KeyAnswer {
    match question {
        KeyQuestion::SigningKey {
            access_key_id,
            scope,
        } => match source.signing_key(access_key_id, scope) {
            Some((principal, key)) => KeyAnswer::SigningKey {
                principal,
                signing_key: hex::encode(key),
            },
            None => KeyAnswer::Unknown,
        },
        KeyQuestion::V2Signature {
            access_key_id,
            algorithm,
            string_to_sign,
            signature,
        } => {
            let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
                return KeyAnswer::Unknown;
            };
            match source.check_v2(access_key_id, *algorithm, string_to_sign, &signature) {
                Some((principal, matches)) => KeyAnswer::V2Signature { principal, matches },
                None => KeyAnswer::Unknown,
            }
        }
    }
}

/// The questions `verify` asks of its key store, found by running it against a store that
/// knows no key (`verify` is a verifier call such as `|keys| verify_s3(&req, res, keys, now)`).
/// Empty for an unsigned request or one refused before its keys are needed.
pub fn questions_of(
    verify: impl FnOnce(&dyn CredentialSource) -> Result<Authenticated, AuthError>,
) -> Vec<KeyQuestion> {
    let recorder = Recorder::default();
    // The outcome is meaningless without keys; only the questions matter.
    let _ = verify(&recorder);
    recorder.asked.into_inner()
}

/// A key store that knows nothing and notes what it is asked.
#[derive(Default)]
struct Recorder {
    asked: RefCell<Vec<KeyQuestion>>,
}

impl CredentialSource for Recorder {
    fn signing_key(
        &self,
        access_key_id: &str,
        scope: &SigningScope,
    ) -> Option<(Principal, [u8; 32])> {
        self.asked.borrow_mut().push(KeyQuestion::SigningKey {
            access_key_id: access_key_id.to_owned(),
            scope: scope.clone(),
        });
        None
    }

    fn check_v2(
        &self,
        access_key_id: &str,
        algorithm: V2Algorithm,
        string_to_sign: &str,
        signature: &[u8],
    ) -> Option<(Principal, bool)> {
        self.asked.borrow_mut().push(KeyQuestion::V2Signature {
            access_key_id: access_key_id.to_owned(),
            algorithm,
            string_to_sign: string_to_sign.to_owned(),
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
        });
        // "Known, but no match": a verifier that tries other spellings of the string to sign
        // after a mismatch (SigV2's host and resource forms) asks about each of them too.
        let nobody = Principal {
            account_id: String::new(),
            account_name: String::new(),
            user_name: String::new(),
            access_key_id: access_key_id.to_owned(),
            role: crate::Role::User,
        };
        Some((nobody, false))
    }
}

/// Verifies against a key store on another host: a dry run finds the questions `verify` asks,
/// `fetch` gets their answers (one round trip), and the real run reads them. `Err` when the
/// answers could not be fetched (the key store is away: not the caller's fault).
pub async fn verify_remotely<E, Fut>(
    verify: impl Fn(&dyn CredentialSource) -> Result<Authenticated, AuthError>,
    fetch: impl FnOnce(Vec<KeyQuestion>) -> Fut,
) -> Result<Result<Authenticated, AuthError>, E>
where
    Fut: std::future::Future<Output = Result<Answered, E>>,
{
    let questions = questions_of(&verify);
    let answered = match questions.is_empty() {
        true => Answered::default(),
        false => fetch(questions).await?,
    };
    Ok(verify(&answered))
}

/// A key store holding the answers to one request's questions: the verifier's second run
/// reads them, and any other question is a key it does not know.
#[derive(Debug, Default)]
pub struct Answered {
    answers: Vec<(KeyQuestion, KeyAnswer)>,
}

impl Answered {
    /// The store answering `question` with `answer` (and the ones before).
    pub fn with(mut self, question: KeyQuestion, answer: KeyAnswer) -> Self {
        self.answers.push((question, answer));
        self
    }
}

impl CredentialSource for Answered {
    fn signing_key(
        &self,
        access_key_id: &str,
        scope: &SigningScope,
    ) -> Option<(Principal, [u8; 32])> {
        self.answers.iter().find_map(|(q, a)| match (q, a) {
            (
                KeyQuestion::SigningKey {
                    access_key_id: id,
                    scope: s,
                },
                KeyAnswer::SigningKey {
                    principal,
                    signing_key,
                },
            ) if id == access_key_id && s == scope => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(signing_key, &mut key).ok()?;
                Some((principal.clone(), key))
            }
            _ => None,
        })
    }

    fn check_v2(
        &self,
        access_key_id: &str,
        algorithm: V2Algorithm,
        string_to_sign: &str,
        signature: &[u8],
    ) -> Option<(Principal, bool)> {
        let signature = base64::engine::general_purpose::STANDARD.encode(signature);
        self.answers.iter().find_map(|(q, a)| match (q, a) {
            (
                KeyQuestion::V2Signature {
                    access_key_id: id,
                    algorithm: alg,
                    string_to_sign: sts,
                    signature: sig,
                },
                KeyAnswer::V2Signature { principal, matches },
            ) if id == access_key_id
                && *alg == algorithm
                && sts == string_to_sign
                && *sig == signature =>
            {
                Some((principal.clone(), *matches))
            }
            _ => None,
        })
    }
}

/// The SigV4 service name the cloud's internal calls are signed for.
pub const INTERNAL_SERVICE: &str = "koala";

/// Whether a component of kind `asker` may learn the answer to `question` about a key of
/// `owner`: each learns only what verifying its own callers takes. A node verifies its
/// cluster controllers' calls; a cluster controller the cloud controller's and the
/// administrators' (`euca_conf`); Walrus its users' S3 requests and the internal calls of
/// nodes (the image feed) and of the cloud controller (bundle reads). Nobody learns the key
/// of a scope older or newer than a day from `now` (a signing key proves one day's requests;
/// requests are valid 15 minutes either side of their date).
pub fn may_learn(
    asker: crate::ComponentKind,
    owner: &Principal,
    question: &KeyQuestion,
    now: std::time::SystemTime,
) -> bool {
    use crate::{ComponentKind as K, Role};
    let is_internal = |service: &str| service == INTERNAL_SERVICE;
    match question {
        KeyQuestion::SigningKey { scope, .. } => {
            if !near(&scope.date, now) {
                return false;
            }
            match (asker, owner.role) {
                (K::NodeController, Role::Component(K::ClusterController)) => {
                    is_internal(&scope.service)
                }
                (K::ClusterController, Role::Component(K::CloudController) | Role::CloudAdmin) => {
                    is_internal(&scope.service)
                }
                (K::Walrus, Role::Component(K::NodeController | K::CloudController)) => {
                    is_internal(&scope.service)
                }
                (K::Walrus, Role::User | Role::CloudAdmin) => scope.service == "s3",
                _ => false,
            }
        }
        KeyQuestion::V2Signature { .. } => {
            asker == K::Walrus && matches!(owner.role, Role::User | Role::CloudAdmin)
        }
    }
}

/// The most questions one call to the key service may ask (a request asks one, a SigV2 one
/// a few: one per spelling of its string to sign).
pub const MAX_QUESTIONS: usize = 16;

/// The key service's answers to a component of kind `asker`: each question answered from
/// `source`, except that a key the asker may not learn of ([`may_learn`]) reads as
/// [`KeyAnswer::Unknown`], as if it did not exist. `None` when more than [`MAX_QUESTIONS`]
/// are asked at once.
pub fn answers_for(
    source: &dyn CredentialSource,
    asker: crate::ComponentKind,
    questions: &[KeyQuestion],
    now: std::time::SystemTime,
) -> Option<Vec<KeyAnswer>> {
    if questions.len() > MAX_QUESTIONS {
        return None;
    }
    let answers = questions
        .iter()
        .map(|q| match answer(source, q) {
            KeyAnswer::SigningKey { principal, .. } | KeyAnswer::V2Signature { principal, .. }
                if !may_learn(asker, &principal, q, now) =>
            {
                KeyAnswer::Unknown
            }
            known => known,
        })
        .collect();
    Some(answers)
}

/// Whether `date` (`YYYYMMDD`) is the UTC day of `now`, the one before or the one after.
fn near(date: &str, now: std::time::SystemTime) -> bool {
    let days = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400)
    };
    crate::canon::parse_amz_date(&format!("{date}T000000Z"))
        .is_some_and(|day| days(day).abs_diff(days(now)) <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ComponentKind as K, Role};
    use std::time::{Duration, UNIX_EPOCH};

    fn owner(role: Role) -> Principal {
        Principal {
            account_id: "000000000001".into(),
            account_name: "eucalyptus".into(),
            user_name: "x".into(),
            access_key_id: "AKIAEXAMPLE".into(),
            role,
        }
    }

    fn v4(date: &str, service: &str) -> KeyQuestion {
        KeyQuestion::SigningKey {
            access_key_id: "AKIAEXAMPLE".into(),
            scope: SigningScope {
                date: date.into(),
                region: "eucalyptus".into(),
                service: service.into(),
            },
        }
    }

    /// One user's key and one cluster controller's.
    struct TwoKeys;

    impl SecretSource for TwoKeys {
        fn secret(&self, access_key_id: &str) -> Option<(Principal, String)> {
            let role = match access_key_id {
                "AKIAUSER" => Role::User,
                "AKIACC" => Role::Component(K::ClusterController),
                _ => return None,
            };
            let mut principal = owner(role);
            principal.access_key_id = access_key_id.into();
            Some((principal, "secret".into()))
        }
    }

    fn question(key: &str, service: &str) -> KeyQuestion {
        KeyQuestion::SigningKey {
            access_key_id: key.into(),
            scope: SigningScope {
                date: "20261204".into(),
                region: "eucalyptus".into(),
                service: service.into(),
            },
        }
    }

    #[test]
    fn the_key_service_answers_only_what_the_asker_may_learn() {
        let now = UNIX_EPOCH + Duration::from_secs(20_791 * 86_400 + 3600);
        let questions = [
            question("AKIACC", "koala"),
            question("AKIAUSER", "koala"),
            question("AKIANONE", "koala"),
        ];
        let answers = answers_for(&TwoKeys, K::NodeController, &questions, now).expect("answers");
        assert!(
            matches!(&answers[0], KeyAnswer::SigningKey { principal, .. }
            if principal.access_key_id == "AKIACC")
        );
        // A user's key is none of a node's business: it reads as no key at all.
        assert_eq!(answers[1], KeyAnswer::Unknown);
        assert_eq!(answers[2], KeyAnswer::Unknown);
        let walrus = answers_for(&TwoKeys, K::Walrus, &[question("AKIAUSER", "s3")], now);
        assert!(matches!(
            &walrus.expect("answers")[0],
            KeyAnswer::SigningKey { .. }
        ));
        let many = vec![question("AKIACC", "koala"); MAX_QUESTIONS + 1];
        assert!(answers_for(&TwoKeys, K::NodeController, &many, now).is_none());
    }

    #[test]
    fn each_component_learns_only_its_callers_keys() {
        // 2026-12-04
        let now = UNIX_EPOCH + Duration::from_secs(20_791 * 86_400 + 3600);
        let today = "20261204";
        let cc = owner(Role::Component(K::ClusterController));
        let clc = owner(Role::Component(K::CloudController));
        let nc = owner(Role::Component(K::NodeController));
        let admin = owner(Role::CloudAdmin);
        let user = owner(Role::User);
        let internal = v4(today, "koala");
        let s3 = v4(today, "s3");
        let allowed = [
            (K::NodeController, &cc, &internal),
            (K::ClusterController, &clc, &internal),
            (K::ClusterController, &admin, &internal),
            (K::Walrus, &nc, &internal),
            (K::Walrus, &clc, &internal),
            (K::Walrus, &user, &s3),
            (K::Walrus, &admin, &s3),
        ];
        for (asker, who, q) in allowed {
            assert!(
                may_learn(asker, who, q, now),
                "{asker:?} {:?} {q:?}",
                who.role
            );
        }
        let refused = [
            // A node learns no user's, administrator's or other node's key.
            (K::NodeController, &user, &internal),
            (K::NodeController, &admin, &internal),
            (K::NodeController, &nc, &internal),
            // ...nor its CC's key for another service.
            (K::NodeController, &cc, &s3),
            (K::ClusterController, &user, &internal),
            (K::ClusterController, &nc, &internal),
            (K::Walrus, &cc, &internal),
            (K::Walrus, &user, &internal),
            (K::Walrus, &nc, &s3),
            (K::CloudController, &user, &s3),
        ];
        for (asker, who, q) in refused {
            assert!(
                !may_learn(asker, who, q, now),
                "{asker:?} {:?} {q:?}",
                who.role
            );
        }
        assert!(may_learn(
            K::NodeController,
            &cc,
            &v4("20261203", "koala"),
            now
        ));
        assert!(may_learn(
            K::NodeController,
            &cc,
            &v4("20261205", "koala"),
            now
        ));
        assert!(!may_learn(
            K::NodeController,
            &cc,
            &v4("20261201", "koala"),
            now
        ));
        assert!(!may_learn(
            K::NodeController,
            &cc,
            &v4("2026120x", "koala"),
            now
        ));
        let v2 = KeyQuestion::V2Signature {
            access_key_id: "AKIAEXAMPLE".into(),
            algorithm: V2Algorithm::HmacSha1,
            string_to_sign: "GET\n\n\n\n/".into(),
            signature: "AAAA".into(),
        };
        assert!(may_learn(K::Walrus, &user, &v2, now));
        assert!(!may_learn(K::Walrus, &nc, &v2, now));
        assert!(!may_learn(K::ClusterController, &admin, &v2, now));
    }
}
