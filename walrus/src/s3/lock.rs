//! Object lock: a bucket's configuration (Get/PutObjectLockConfiguration, or
//! `x-amz-bucket-object-lock-enabled` at creation), each version's retention and legal hold
//! (Get/PutObjectRetention, Get/PutObjectLegalHold, or `x-amz-object-lock-*` on writes), the
//! headers reads answer with, and who may bypass a governance retention.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::access::{authorize, authorize_as, AclCheck, Want};
use super::auth::read_small_body;
use super::bucket::owned;
use super::error::S3Error;
use super::ident::Payload;
use super::router::ObjectPath;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, versioning, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::{BucketName, ObjectKey};
use crate::store::{
    BucketMeta, DefaultRetention, LockConfiguration, LockMode, ObjectLock, ObjectMeta, Retention,
    RetentionPeriod, StoreError, Versioning,
};
use identity::Principal;

/// The header that asks, at CreateBucket, for a bucket with object lock.
pub const LOCK_ENABLED_HEADER: &str = "x-amz-bucket-object-lock-enabled";
const MODE_HEADER: &str = "x-amz-object-lock-mode";
const UNTIL_HEADER: &str = "x-amz-object-lock-retain-until-date";
const HOLD_HEADER: &str = "x-amz-object-lock-legal-hold";
/// The header with which a caller allowed to asks to bypass governance retention.
pub const BYPASS_HEADER: &str = "x-amz-bypass-governance-retention";

const DAY: u64 = 24 * 60 * 60;

fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Governance => "GOVERNANCE",
        LockMode::Compliance => "COMPLIANCE",
    }
}

/// A mode as S3 spells it (upper case only, as S3 takes it).
fn parse_mode(s: &str) -> Option<LockMode> {
    match s.trim() {
        "GOVERNANCE" => Some(LockMode::Governance),
        "COMPLIANCE" => Some(LockMode::Compliance),
        _ => None,
    }
}

/// An ISO 8601 instant (`2030-01-01T00:00:00Z`, with 0 to 9 fraction digits, or an offset).
pub fn parse_instant(s: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let nanos = t.unix_timestamp_nanos();
    let nanos = u64::try_from(nanos).ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// An instant as S3 writes retention dates: whole seconds, with microseconds when it has
/// any (so that a date given with them reads back equal).
pub fn format_instant(t: SystemTime) -> String {
    // Dates come from ISO 8601 text (years up to 9999) or 100 years from now at most; one
    // past what `time` represents is written as its last instant rather than panicking.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let dt = time::OffsetDateTime::UNIX_EPOCH
        .checked_add(time::Duration::seconds(
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        ))
        .and_then(|d| d.checked_add(time::Duration::nanoseconds(i64::from(since.subsec_nanos()))))
        .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59.999999 UTC));
    let micros = dt.microsecond();
    let frac = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{frac}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
    )
}

/// InvalidRequest unless the bucket has object lock (the object-level calls need it).
fn require_lock(bucket: &BucketMeta) -> Result<(), S3Error> {
    match bucket.object_lock {
        Some(_) => Ok(()),
        None => Err(S3Error::InvalidRequest(
            "Bucket is missing Object Lock Configuration".into(),
        )),
    }
}

// ---- the bucket's configuration ----

/// The configuration an `ObjectLockConfiguration` document asks for.
pub fn parse_configuration(body: &[u8]) -> Result<LockConfiguration, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "ObjectLockConfiguration" {
        return Err(S3Error::MalformedXml);
    }
    if root.child_text("ObjectLockEnabled").map(str::trim) != Some("Enabled") {
        return Err(S3Error::MalformedXml);
    }
    let Some(rule) = root.child("Rule") else {
        return Ok(LockConfiguration::default());
    };
    let d = rule
        .child("DefaultRetention")
        .ok_or(S3Error::MalformedXml)?;
    let mode = d
        .child_text("Mode")
        .and_then(parse_mode)
        .ok_or(S3Error::MalformedXml)?;
    let number = |name: &str| -> Result<Option<u32>, S3Error> {
        let Some(text) = d.child_text(name) else {
            return Ok(None);
        };
        let n: i64 = text.trim().parse().map_err(|_| S3Error::MalformedXml)?;
        // S3's limits: 100 years at most, in days or years.
        let max = if name == "Days" { 36_500 } else { 100 };
        match u32::try_from(n) {
            Ok(n) if n > 0 && n <= max => Ok(Some(n)),
            _ => Err(S3Error::InvalidRetentionPeriod),
        }
    };
    let period = match (number("Days")?, number("Years")?) {
        (Some(days), None) => RetentionPeriod::Days(days),
        (None, Some(years)) => RetentionPeriod::Years(years),
        _ => return Err(S3Error::MalformedXml),
    };
    Ok(LockConfiguration {
        default_retention: Some(DefaultRetention { mode, period }),
    })
}

/// GetObjectLockConfiguration (the owner's).
pub fn get_configuration(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let config = owned(ctx, bucket, "s3:GetBucketObjectLockConfiguration")?
        .object_lock
        .ok_or(S3Error::ObjectLockConfigurationNotFound)?;
    let mut w = xml::document();
    w.open_with("ObjectLockConfiguration", &xml::S3_ROOT);
    w.elem("ObjectLockEnabled", "Enabled");
    if let Some(d) = config.default_retention {
        w.open("Rule");
        w.open("DefaultRetention");
        w.elem("Mode", mode_name(d.mode));
        match d.period {
            RetentionPeriod::Days(n) => w.elem("Days", &n.to_string()),
            RetentionPeriod::Years(n) => w.elem("Years", &n.to_string()),
        };
        w.close("DefaultRetention");
        w.close("Rule");
    }
    w.close("ObjectLockConfiguration");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// PutObjectLockConfiguration (the owner's): turns lock on for a bucket whose versioning is
/// enabled (InvalidBucketState otherwise), and sets or clears its default retention.
pub async fn put_configuration(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketObjectLockConfiguration")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let config = parse_configuration(&body)?;
    // Checked in the update: versioning suspended meanwhile is seen.
    ctx.store().update_bucket(bucket, |m| {
        if m.versioning != Some(Versioning::Enabled) {
            return Err(StoreError::InvalidBucketState(
                "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
            ));
        }
        m.object_lock = Some(config);
        Ok(())
    })?;
    Ok(empty_response(StatusCode::OK))
}

// ---- a version's lock on writes and reads ----

/// Who writes, and where: what [`requested`] checks rights against.
pub struct Writer<'a> {
    /// The writer (a POST form's signer, else the request's).
    pub principal: Option<&'a Principal>,
    /// The bucket written to.
    pub bucket: &'a BucketMeta,
    /// The key written.
    pub key: &'a ObjectKey,
}

/// The object lock a write asks for in its `x-amz-object-lock-*` headers (which take the
/// rights to set a retention or legal hold besides the right to write: the bucket owner's,
/// or its policy's), or the bucket's default retention when it names none.
pub fn requested(ctx: &Ctx, headers: &HeaderMap, writer: Writer) -> Result<ObjectLock, S3Error> {
    let bucket = writer.bucket;
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (mode, until, hold) = (get(MODE_HEADER), get(UNTIL_HEADER), get(HOLD_HEADER));
    let Some(config) = bucket.object_lock else {
        if mode.is_some() || until.is_some() || hold.is_some() {
            return Err(S3Error::InvalidRequest(
                "Bucket is missing ObjectLockConfiguration".into(),
            ));
        }
        return Ok(ObjectLock::default());
    };
    let retention = match (mode, until) {
        (None, None) => config.default_retention.map(|d| Retention {
            mode: d.mode,
            until: SystemTime::now()
                + Duration::from_secs(match d.period {
                    RetentionPeriod::Days(n) => u64::from(n) * DAY,
                    RetentionPeriod::Years(n) => u64::from(n) * 365 * DAY,
                }),
        }),
        (Some(m), Some(u)) => {
            let mode = parse_mode(m)
                .ok_or_else(|| S3Error::InvalidArgument("Unknown wormMode directive.".into()))?;
            let until = parse_instant(u).ok_or_else(|| {
                S3Error::InvalidArgument(
                    "The retain until date must be provided in ISO 8601 format".into(),
                )
            })?;
            Some(future(Retention { mode, until })?)
        }
        _ => return Err(S3Error::InvalidArgument(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
                .into(),
        )),
    };
    let legal_hold = hold.map(parse_hold).transpose()?;
    let may = |action: &'static str| {
        authorize_as(
            ctx,
            writer.principal,
            bucket,
            Want::object(action, writer.key, None),
            AclCheck::Owner(&bucket.acl),
        )
    };
    if mode.is_some() {
        may("s3:PutObjectRetention")?;
    }
    if legal_hold.is_some() {
        may("s3:PutObjectLegalHold")?;
    }
    Ok(ObjectLock {
        retention,
        legal_hold,
    })
}

/// InvalidArgument for a retention that has already ended.
fn future(r: Retention) -> Result<Retention, S3Error> {
    if r.until <= SystemTime::now() {
        return Err(S3Error::InvalidArgument(
            "The retain until date must be in the future!".into(),
        ));
    }
    Ok(r)
}

fn parse_hold(s: &str) -> Result<bool, S3Error> {
    match s.trim() {
        "ON" => Ok(true),
        "OFF" => Ok(false),
        _ => Err(S3Error::MalformedXml),
    }
}

/// Adds the `x-amz-object-lock-*` headers of a version to a GET or HEAD answer.
pub fn add_headers(h: &mut HeaderMap, lock: &ObjectLock) {
    if let Some(r) = lock.retention {
        h.insert(MODE_HEADER, HeaderValue::from_static(mode_name(r.mode)));
        if let Ok(v) = HeaderValue::from_str(&format_instant(r.until)) {
            h.insert(UNTIL_HEADER, v);
        }
    }
    if let Some(on) = lock.legal_hold {
        h.insert(
            HOLD_HEADER,
            HeaderValue::from_static(if on { "ON" } else { "OFF" }),
        );
    }
}

/// Whether the request asks to bypass governance retention of `key` and its caller may (the
/// bucket's owner, or whom its policy allows `s3:BypassGovernanceRetention` on the object).
pub fn bypasses_governance(ctx: &Ctx, bucket: &BucketMeta, key: &ObjectKey) -> bool {
    let asked = ctx
        .header(BYPASS_HEADER)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    asked
        && authorize(
            ctx,
            bucket,
            Want::object("s3:BypassGovernanceRetention", key, None),
            AclCheck::Owner(&bucket.acl),
        )
        .is_ok()
}

// ---- retention and legal hold of a version ----

/// The version a retention or legal hold call addresses, after the checks every such call
/// makes: the bucket has lock, the caller may do `action`.
fn locked_version(
    ctx: &Ctx,
    object: &ObjectPath,
    actions: (&'static str, &'static str),
    owner_only: bool,
) -> Result<(BucketMeta, ObjectMeta), S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    require_lock(&bmeta)?;
    let meta = versioning::addressed(ctx, object)?;
    let check = if owner_only {
        AclCheck::OwnerOfEither(&meta.acl, &bmeta.acl)
    } else {
        AclCheck::Permission(&meta.acl, Permission::Read)
    };
    authorize(ctx, &bmeta, Want::addressed(actions, object, &meta), check)?;
    Ok((bmeta, meta))
}

/// Changes the lock of the version the caller was allowed to change, under its key's lock.
fn change_lock(
    ctx: &Ctx,
    object: &ObjectPath,
    allowed: (BucketMeta, ObjectMeta),
    change: impl FnOnce(&mut ObjectLock) -> Result<(), StoreError>,
) -> Result<Response<Body>, S3Error> {
    let (bmeta, meta) = allowed;
    let changed = versioning::update_authorized(ctx, object, &meta, |meta| change(&mut meta.lock))?;
    let mut resp = empty_response(StatusCode::OK);
    versioning::add_version_header(resp.headers_mut(), &bmeta, &changed);
    Ok(resp)
}

/// GetObjectRetention.
pub fn get_retention(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let (_, meta) = locked_version(
        ctx,
        object,
        ("s3:GetObjectRetention", "s3:GetObjectRetention"),
        false,
    )?;
    let r = meta
        .lock
        .retention
        .ok_or(S3Error::NoSuchObjectLockConfiguration)?;
    let mut w = xml::document();
    w.open_with("Retention", &xml::S3_ROOT);
    w.elem("Mode", mode_name(r.mode));
    w.elem("RetainUntilDate", &format_instant(r.until));
    w.close("Retention");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// The retention a `Retention` document asks for.
pub fn parse_retention(body: &[u8]) -> Result<Retention, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "Retention" {
        return Err(S3Error::MalformedXml);
    }
    let mode = root
        .child_text("Mode")
        .and_then(parse_mode)
        .ok_or(S3Error::MalformedXml)?;
    let until = root
        .child_text("RetainUntilDate")
        .and_then(parse_instant)
        .ok_or(S3Error::MalformedXml)?;
    Ok(Retention { mode, until })
}

/// Whether `old` may become `new`: a retention in force may only grow in the same mode
/// (governance may change at will when bypassed); an ended one is as none.
fn may_replace(old: Option<Retention>, new: &Retention, bypass: bool) -> bool {
    match old {
        Some(old) if old.until > SystemTime::now() => match old.mode {
            LockMode::Compliance => new.mode == LockMode::Compliance && new.until >= old.until,
            LockMode::Governance if bypass => true,
            LockMode::Governance => new.mode == LockMode::Governance && new.until >= old.until,
        },
        _ => true,
    }
}

/// PutObjectRetention: a retention may be set, lengthened, or (governance, bypassed)
/// shortened or made compliance; never loosened otherwise (AccessDenied).
pub async fn put_retention(
    ctx: &Ctx,
    object: &ObjectPath,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let allowed = locked_version(
        ctx,
        object,
        ("s3:PutObjectRetention", "s3:PutObjectRetention"),
        true,
    )?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let retention = future(parse_retention(&body)?)?;
    let bypass = bypasses_governance(ctx, &allowed.0, &object.key);
    change_lock(ctx, object, allowed, |lock| {
        if !may_replace(lock.retention, &retention, bypass) {
            return Err(StoreError::ObjectLocked);
        }
        lock.retention = Some(retention);
        Ok(())
    })
}

/// GetObjectLegalHold.
pub fn get_legal_hold(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let (_, meta) = locked_version(
        ctx,
        object,
        ("s3:GetObjectLegalHold", "s3:GetObjectLegalHold"),
        false,
    )?;
    let on = meta
        .lock
        .legal_hold
        .ok_or(S3Error::NoSuchObjectLockConfiguration)?;
    let mut w = xml::document();
    w.open_with("LegalHold", &xml::S3_ROOT);
    w.elem("Status", if on { "ON" } else { "OFF" });
    w.close("LegalHold");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// PutObjectLegalHold: on or off, whoever may set it, whatever the retention.
pub async fn put_legal_hold(
    ctx: &Ctx,
    object: &ObjectPath,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let allowed = locked_version(
        ctx,
        object,
        ("s3:PutObjectLegalHold", "s3:PutObjectLegalHold"),
        true,
    )?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let root = xml::parse(&body)?;
    if root.name != "LegalHold" {
        return Err(S3Error::MalformedXml);
    }
    let on = parse_hold(root.child_text("Status").unwrap_or_default())?;
    change_lock(ctx, object, allowed, |lock| {
        lock.legal_hold = Some(on);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        for s in [
            "2030-01-01T00:00:00Z",
            "2140-01-01T00:00:00Z",
            "2027-03-04T05:06:07.123456Z",
        ] {
            let t = parse_instant(s).expect(s);
            assert_eq!(format_instant(t), s);
        }
        assert_eq!(
            parse_instant("2030-01-01T00:00:00.000Z"),
            parse_instant("2030-01-01T00:00:00Z")
        );
        assert!(parse_instant("2030-01-01").is_none());
        // Past what dates can say: written as the last one, never a panic.
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert!(format_instant(far).starts_with("9999-12-31T23:59:59"));
    }

    #[test]
    fn configurations() {
        let doc = |rule: &str| {
            format!("<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>{rule}</ObjectLockConfiguration>")
        };
        let rule = |inner: &str| {
            doc(&format!(
                "<Rule><DefaultRetention>{inner}</DefaultRetention></Rule>"
            ))
        };
        assert_eq!(
            parse_configuration(doc("").as_bytes()).expect("ok"),
            LockConfiguration::default()
        );
        assert_eq!(
            parse_configuration(rule("<Mode>COMPLIANCE</Mode><Years>1</Years>").as_bytes())
                .expect("ok")
                .default_retention,
            Some(DefaultRetention {
                mode: LockMode::Compliance,
                period: RetentionPeriod::Years(1)
            })
        );
        for (bad, code) in [
            (rule("<Mode>GOVERNANCE</Mode><Days>1</Days><Years>1</Years>"), "MalformedXML"),
            (rule("<Mode>GOVERNANCE</Mode><Days>0</Days>"), "InvalidRetentionPeriod"),
            (rule("<Mode>GOVERNANCE</Mode><Years>-1</Years>"), "InvalidRetentionPeriod"),
            (rule("<Mode>GOVERNANCE</Mode><Days>36501</Days>"), "InvalidRetentionPeriod"),
            (rule("<Mode>GOVERNANCE</Mode><Years>101</Years>"), "InvalidRetentionPeriod"),
            (rule("<Mode>governance</Mode><Days>1</Days>"), "MalformedXML"),
            (rule("<Mode>GOVERNANCE</Mode>"), "MalformedXML"),
            ("<ObjectLockConfiguration><ObjectLockEnabled>Disabled</ObjectLockEnabled></ObjectLockConfiguration>".to_owned(), "MalformedXML"),
        ] {
            let e = parse_configuration(bad.as_bytes()).expect_err(&bad);
            assert_eq!(e.code_and_status().0, code, "{bad}");
        }
    }

    #[test]
    fn retention_changes() {
        let at = |days: u64, mode| Retention {
            mode,
            until: SystemTime::now() + Duration::from_secs(days * DAY),
        };
        let (g, c) = (LockMode::Governance, LockMode::Compliance);
        assert!(may_replace(None, &at(1, c), false));
        assert!(may_replace(Some(at(1, g)), &at(2, g), false));
        assert!(!may_replace(Some(at(2, g)), &at(1, g), false));
        assert!(may_replace(Some(at(2, g)), &at(1, g), true));
        assert!(!may_replace(Some(at(2, g)), &at(2, c), false));
        assert!(may_replace(Some(at(2, g)), &at(2, c), true));
        assert!(!may_replace(Some(at(2, c)), &at(3, g), true));
        assert!(!may_replace(Some(at(2, c)), &at(1, c), true));
        assert!(may_replace(Some(at(2, c)), &at(3, c), false));
        let ended = Retention {
            mode: c,
            until: SystemTime::now() - Duration::from_secs(1),
        };
        assert!(may_replace(Some(ended), &at(1, g), false));
    }
}
