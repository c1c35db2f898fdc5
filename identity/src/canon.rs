//! Building blocks both signature versions share: AWS's percent-encoding, query parsing,
//! header folding, the date formats clients send, and the keyed hashes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use ring::{digest, hmac};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The clock skew accepted between a signed request's date and the server's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The bytes AWS's `UriEncode` leaves as they are: `A-Za-z0-9-_.~`.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// [`UNRESERVED`] and `/`, for paths.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

/// Percent-encodes as AWS's `UriEncode`: everything but `A-Za-z0-9-_.~` (and `/` when
/// `keep_slash`), with uppercase hex digits. Public because signers need the same encoding
/// for the query strings and form bodies they sign, and S3 listings for `encoding-type=url`.
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let set = if keep_slash {
        UNRESERVED_AND_SLASH
    } else {
        UNRESERVED
    };
    percent_encoding::percent_encode(input, set).to_string()
}

/// Decodes `%XX` escapes (malformed escapes are kept literally, as most servers do); with
/// `plus_is_space`, `+` becomes a space as in HTML form encoding.
pub(crate) fn percent_decode(input: &str, plus_is_space: bool) -> Vec<u8> {
    if plus_is_space && input.contains('+') {
        let replaced = input.replace('+', " ");
        percent_encoding::percent_decode_str(&replaced).collect()
    } else {
        percent_encoding::percent_decode_str(input).collect()
    }
}

/// One `name[=value]` pair of a query string or form body, decoded.
#[derive(Debug, Clone)]
pub(crate) struct Param {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Whether the raw pair had an `=` (SigV2's resource keeps `acl` and `acl=` apart).
    pub has_eq: bool,
}

impl Param {
    /// The value as text, replacing bytes that are not UTF-8.
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// Splits a raw query string (or `application/x-www-form-urlencoded` body) into decoded pairs,
/// in order, skipping empty segments.
pub(crate) fn parse_params(raw: &str, plus_is_space: bool) -> Vec<Param> {
    raw.split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.split_once('=') {
            Some((k, v)) => Param {
                key: percent_decode(k, plus_is_space),
                value: percent_decode(v, plus_is_space),
                has_eq: true,
            },
            None => Param {
                key: percent_decode(segment, plus_is_space),
                value: Vec::new(),
                has_eq: false,
            },
        })
        .collect()
}

/// The first parameter named `name` (case-sensitive, as AWS matches them).
pub(crate) fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a Param> {
    params.iter().find(|p| p.key == name.as_bytes())
}

/// All values of header `name`, each trimmed with inner runs of spaces folded to one, joined
/// by `,` as SigV4's canonical headers (and SigV2's `x-amz-*` lines) want them.
pub(crate) fn folded_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    let folded: Vec<String> = values
        .map(|v| fold_spaces(&String::from_utf8_lossy(v.as_bytes())))
        .collect();
    Some(folded.join(","))
}

/// Trims and collapses runs of whitespace to a single space.
pub(crate) fn fold_spaces(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_ascii_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// A header's value as text, if present and visible ASCII/UTF-8.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// SHA-256 of `data`, hex-encoded in lowercase.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// HMAC-SHA256 of `msg` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `now` is within [`MAX_SKEW`] of `when`.
pub(crate) fn within_skew(when: SystemTime, now: SystemTime) -> bool {
    let gap = match now.duration_since(when) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    gap <= MAX_SKEW
}

/// Parses SigV4's `YYYYMMDDTHHMMSSZ`.
pub(crate) fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let year = digits(&s[0..4])?;
    let month = digits(&s[4..6])?;
    let day = digits(&s[6..8])?;
    let hour = digits(&s[9..11])?;
    let minute = digits(&s[11..13])?;
    let second = digits(&s[13..15])?;
    to_system_time(year, month, day, hour, minute, second, 0)
}

/// Formats a time as SigV4's `YYYYMMDDTHHMMSSZ`.
pub(crate) fn format_amz_date(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// Parses the date forms S3 clients put in `Date`/`x-amz-date`: RFC 1123 with `GMT`, RFC 2822
/// with a numeric zone (euca2ools writes `-0000`), RFC 850 and asctime (via `httpdate`), and
/// SigV4's basic ISO 8601.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Some(t) = parse_amz_date(s) {
        return Some(t);
    }
    if let Some(t) = parse_rfc2822(s) {
        return Some(t);
    }
    httpdate::parse_http_date(s).ok()
}

/// `[Dow,] DD Mon YYYY HH:MM:SS ZONE`, ZONE being `GMT`, `UT`, `UTC`, `Z` or `±HHMM`.
fn parse_rfc2822(s: &str) -> Option<SystemTime> {
    let rest = match s.split_once(',') {
        Some((_, rest)) => rest,
        None => s,
    };
    let mut words = rest.split_ascii_whitespace();
    let day = digits(words.next()?)?;
    let month = month_number(words.next()?)?;
    let year = digits(words.next()?)?;
    let clock = words.next()?;
    let zone = words.next().unwrap_or("GMT");
    if words.next().is_some() {
        return None;
    }
    let mut hms = clock.split(':');
    let hour = digits(hms.next()?)?;
    let minute = digits(hms.next()?)?;
    let second = match hms.next() {
        Some(sec) => digits(sec)?,
        None => 0,
    };
    let offset_secs = match zone {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        _ => {
            let zb = zone.as_bytes();
            if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') {
                return None;
            }
            let hours = i64::from(digits(&zone[1..3])?);
            let mins = i64::from(digits(&zone[3..5])?);
            let secs = hours * 3600 + mins * 60;
            if zb[0] == b'-' {
                -secs
            } else {
                secs
            }
        }
    };
    to_system_time(year, month, day, hour, minute, second, offset_secs)
}

/// Parses ISO 8601 / RFC 3339 timestamps as SigV2 Query clients send them
/// (`2026-11-25T14:57:36Z`, with optional fractional seconds or a numeric offset; a missing
/// zone means UTC).
pub(crate) fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    if let Ok(dt) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(dt.into());
    }
    // No zone at all: treat as UTC.
    let with_z = format!("{s}Z");
    OffsetDateTime::parse(&with_z, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(Into::into)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
        return None;
    }
    s.parse().ok()
}

fn month_number(s: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = s.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn to_system_time(
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset_secs: i64,
) -> Option<SystemTime> {
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
    )
    .ok()?;
    let offset = UtcOffset::from_whole_seconds(i32::try_from(offset_secs).ok()?).ok()?;
    let dt = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(dt.into())
}

/// Seconds since the Unix epoch as SigV2's `Expires` gives them.
pub(crate) fn unix_seconds(s: &str) -> Option<SystemTime> {
    let secs: u64 = s.trim().parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_aws() {
        assert_eq!(uri_encode(b"a b/c~d*+", true), "a%20b/c~d%2A%2B");
        assert_eq!(uri_encode(b"a/b", false), "a%2Fb");
        assert_eq!(uri_encode("é".as_bytes(), false), "%C3%A9");
    }

    #[test]
    fn parses_client_dates() {
        let euca = parse_http_date("Wed, 25 Nov 2026 14:57:34 -0000").unwrap();
        let gmt = parse_http_date("Wed, 25 Nov 2026 14:57:34 GMT").unwrap();
        let amz = parse_http_date("20261125T145734Z").unwrap();
        assert_eq!(euca, gmt);
        assert_eq!(euca, amz);
        let plus_one = parse_http_date("Wed, 25 Nov 2026 15:57:34 +0100").unwrap();
        assert_eq!(euca, plus_one);
        assert_eq!(format_amz_date(euca), "20261125T145734Z");
        assert_eq!(parse_iso8601("2026-11-25T14:57:34Z"), Some(euca));
        assert_eq!(parse_iso8601("2026-11-25T14:57:34.000Z"), Some(euca));
        assert_eq!(parse_iso8601("2026-11-25T14:57:34"), Some(euca));
        assert!(parse_http_date("yesterday").is_none());
        assert!(parse_amz_date("20261325T145734Z").is_none());
    }

    #[test]
    fn folds_headers() {
        let mut h = HeaderMap::new();
        h.append("x-amz-meta-a", "  one   two ".parse().unwrap());
        h.append("x-amz-meta-a", "three".parse().unwrap());
        assert_eq!(
            folded_header(&h, "x-amz-meta-a").as_deref(),
            Some("one two,three")
        );
        assert_eq!(folded_header(&h, "x-amz-meta-b"), None);
    }
}
