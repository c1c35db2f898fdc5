//! Bucket policies: the IAM policy language as S3 reads it (statements of Effect,
//! Principal / NotPrincipal, Action / NotAction, Resource / NotResource and Condition), parsed
//! once when a policy is put and evaluated per request. An explicit Deny wins, an Allow grants,
//! and a policy that says neither leaves the decision to the ACLs (the caller's part).
//!
//! What is accepted follows what S3 clients and the conformance suites send: a statement
//! without Resource applies to every resource of the bucket, principals that name no account
//! Walrus knows simply match nobody, `Sid`s may repeat.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// The most bytes a policy may hold, whitespace aside (S3's limit).
pub const MAX_POLICY_BYTES: usize = 20 * 1024;

/// Why a policy document is refused (S3's `MalformedPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn malformed(msg: impl Into<String>) -> PolicyError {
    PolicyError(msg.into())
}

/// A parsed bucket policy.
#[derive(Clone, Debug)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// Whom a principal entry names.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Principal {
    /// `*`: everyone, anonymous callers included.
    Anyone,
    /// Every user of an account (`arn:aws:iam::ID:root`, a bare id, a canonical id).
    Account(String),
    /// One user of an account (`arn:aws:iam::ID:user/[path/]NAME`).
    User { account: String, name: String },
    /// A principal no S3 request of Walrus comes from (a service, an unknown form).
    Nobody,
}

/// A list of patterns, or of exceptions (`NotAction`, `NotResource`, `NotPrincipal`).
#[derive(Clone, Debug)]
struct Listed<T> {
    items: Vec<T>,
    negated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    ArnEquals,
    ArnLike,
    Null,
}

/// Operators by name, with whether the name is the negation of the operator.
const OPERATORS: &[(&str, Operator, bool)] = &[
    ("StringEquals", Operator::StringEquals, false),
    ("StringNotEquals", Operator::StringEquals, true),
    (
        "StringEqualsIgnoreCase",
        Operator::StringEqualsIgnoreCase,
        false,
    ),
    (
        "StringNotEqualsIgnoreCase",
        Operator::StringEqualsIgnoreCase,
        true,
    ),
    ("StringLike", Operator::StringLike, false),
    ("StringNotLike", Operator::StringLike, true),
    ("NumericEquals", Operator::NumericEquals, false),
    ("NumericNotEquals", Operator::NumericEquals, true),
    ("NumericLessThan", Operator::NumericLessThan, false),
    (
        "NumericLessThanEquals",
        Operator::NumericLessThanEquals,
        false,
    ),
    ("NumericGreaterThan", Operator::NumericGreaterThan, false),
    (
        "NumericGreaterThanEquals",
        Operator::NumericGreaterThanEquals,
        false,
    ),
    ("DateEquals", Operator::DateEquals, false),
    ("DateNotEquals", Operator::DateEquals, true),
    ("DateLessThan", Operator::DateLessThan, false),
    ("DateLessThanEquals", Operator::DateLessThanEquals, false),
    ("DateGreaterThan", Operator::DateGreaterThan, false),
    (
        "DateGreaterThanEquals",
        Operator::DateGreaterThanEquals,
        false,
    ),
    ("Bool", Operator::Bool, false),
    ("BinaryEquals", Operator::BinaryEquals, false),
    ("IpAddress", Operator::IpAddress, false),
    ("NotIpAddress", Operator::IpAddress, true),
    ("ArnEquals", Operator::ArnEquals, false),
    ("ArnNotEquals", Operator::ArnEquals, true),
    ("ArnLike", Operator::ArnLike, false),
    ("ArnNotLike", Operator::ArnLike, true),
    ("Null", Operator::Null, false),
];

/// How a condition treats a key with several values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quantifier {
    /// Plain: some value of the request satisfies it.
    Single,
    /// `ForAnyValue:`.
    Any,
    /// `ForAllValues:`.
    All,
}

/// One `operator: {key: values}` test.
#[derive(Clone, Debug)]
struct Condition {
    operator: Operator,
    negated: bool,
    quantifier: Quantifier,
    if_exists: bool,
    /// The key, its name part lowercased (`s3:existingobjecttag/Project`).
    key: String,
    values: Vec<String>,
}

#[derive(Clone, Debug)]
struct Statement {
    effect: Effect,
    principals: Listed<Principal>,
    actions: Listed<String>,
    /// `None`: every resource (no Resource given).
    resources: Option<Listed<String>>,
    conditions: Vec<Condition>,
}

/// Who is asking: an account's user, or nobody signed (`None` in [`Request::caller`]).
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The 12-digit account id.
    pub account: &'a str,
    /// The user's name in the account.
    pub user: &'a str,
}

/// A request as a policy sees it.
pub struct Request<'a> {
    /// The caller; `None` for an anonymous request.
    pub caller: Option<Caller<'a>>,
    /// The action, as `s3:GetObject`.
    pub action: &'a str,
    /// The resource: `bucket` or `bucket/key` (the part after `arn:aws:s3:::`).
    pub resource: &'a str,
    /// The values of a condition key (given its name part lowercased), `None` when the
    /// request has none.
    pub context: &'a dyn Fn(&str) -> Option<Vec<String>>,
}

/// What a policy says of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it.
    Deny,
    /// No statement applies.
    Silent,
}

impl Policy {
    /// Parses and checks a policy document.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let bytes = text.bytes().filter(|b| !b.is_ascii_whitespace()).count();
        if bytes > MAX_POLICY_BYTES {
            return Err(malformed("Policies must be less than 20 KB"));
        }
        if !text.trim_start().starts_with('{') {
            return Err(malformed(
                "Policies must be valid JSON and the first byte must be '{'",
            ));
        }
        let doc: Value = serde_json::from_str(text)
            .map_err(|_| malformed("Policies must be valid JSON and the first byte must be '{'"))?;
        let doc = doc
            .as_object()
            .ok_or_else(|| malformed("Policies must be a JSON object"))?;
        if let Some(v) = doc.get("Version") {
            match v.as_str() {
                Some("2012-10-17" | "2008-10-17") => {}
                _ => return Err(malformed("The policy's Version is not valid")),
            }
        }
        let raw = match doc.get("Statement") {
            Some(Value::Array(items)) => items.iter().collect::<Vec<_>>(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(malformed("Missing required field Statement")),
        };
        if raw.is_empty() {
            return Err(malformed("Missing required field Statement"));
        }
        let statements = raw
            .into_iter()
            .map(statement)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// What the policy says of `request`: a Deny wins over any Allow.
    pub fn evaluate(&self, request: &Request) -> Decision {
        let mut allowed = false;
        for s in &self.statements {
            if s.applies(request) {
                match s.effect {
                    Effect::Deny => return Decision::Deny,
                    Effect::Allow => allowed = true,
                }
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::Silent
        }
    }

    /// Whether the policy grants anything to anyone (S3's "public" policy): an Allow to
    /// `*` not narrowed by a fixed source address, network, account or ARN.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow
                && !s.principals.negated
                && s.principals.items.contains(&Principal::Anyone)
                && !s.conditions.iter().any(Condition::fixes_the_source)
        })
    }
}

/// A string or a list of strings.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(malformed(format!(
            "{what} must be a string or a list of strings"
        ))),
    };
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(malformed(format!("{what} must not be empty"))),
        other => Ok(vec![one(other)?]),
    }
}

/// The one of `name` / `Not`+`name` a statement has (`Err` when both are).
fn either<'a>(
    s: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<(&'a Value, bool)>, PolicyError> {
    match (s.get(name), s.get(&format!("Not{name}"))) {
        (Some(_), Some(_)) => Err(malformed(format!(
            "A statement cannot have both {name} and Not{name}"
        ))),
        (Some(v), None) => Ok(Some((v, false))),
        (None, Some(v)) => Ok(Some((v, true))),
        (None, None) => Ok(None),
    }
}

fn statement(v: &Value) -> Result<Statement, PolicyError> {
    let s = v
        .as_object()
        .ok_or_else(|| malformed("Each statement must be a JSON object"))?;
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        Some(_) => return Err(malformed("Invalid effect")),
        None => return Err(malformed("Missing required field Effect")),
    };
    let (who, negated) =
        either(s, "Principal")?.ok_or_else(|| malformed("Missing required field Principal"))?;
    if negated && effect == Effect::Allow {
        return Err(malformed("NotPrincipal cannot be used with Allow"));
    }
    let principals = Listed {
        items: principals(who)?,
        negated,
    };
    let (acts, negated) =
        either(s, "Action")?.ok_or_else(|| malformed("Missing required field Action"))?;
    let items = strings(acts, "Action")?;
    for a in &items {
        let lower = a.to_ascii_lowercase();
        if lower != "*" && !lower.starts_with("s3:") {
            return Err(malformed(format!("Policy has invalid action: {a}")));
        }
    }
    let actions = Listed { items, negated };
    let resources = match either(s, "Resource")? {
        None => None,
        Some((res, negated)) => Some(Listed {
            items: strings(res, "Resource")?
                .iter()
                .map(|r| resource(r))
                .collect::<Result<_, _>>()?,
            negated,
        }),
    };
    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(c) => conditions(c)?,
    };
    Ok(Statement {
        effect,
        principals,
        actions,
        resources,
        conditions,
    })
}

fn principals(v: &Value) -> Result<Vec<Principal>, PolicyError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![Principal::Anyone]),
        Value::Object(map) if !map.is_empty() => {
            let mut out = Vec::new();
            for (kind, names) in map {
                let names = strings(names, "Principal")?;
                for name in names {
                    out.push(match kind.as_str() {
                        "AWS" => aws_principal(&name),
                        "CanonicalUser" => Principal::Account(name),
                        "Service" | "Federated" => Principal::Nobody,
                        _ => return Err(malformed(format!("Invalid principal type: {kind}"))),
                    });
                }
            }
            Ok(out)
        }
        _ => Err(malformed("Invalid principal in policy")),
    }
}

/// An `AWS` principal: `*`, an account id, or an IAM ARN of an account or user.
fn aws_principal(name: &str) -> Principal {
    if name == "*" {
        return Principal::Anyone;
    }
    if let Some(rest) = name.strip_prefix("arn:aws:iam::") {
        if let Some((account, what)) = rest.split_once(':') {
            if what == "root" {
                return Principal::Account(account.to_owned());
            }
            if let Some(path) = what.strip_prefix("user/") {
                let name = path.rsplit('/').next().unwrap_or(path);
                return Principal::User {
                    account: account.to_owned(),
                    name: name.to_owned(),
                };
            }
        }
        return Principal::Nobody;
    }
    if name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()) {
        return Principal::Account(name.to_owned());
    }
    Principal::Nobody
}

/// The resource part of an S3 ARN (`arn:aws:s3:::bucket/key*` → `bucket/key*`), or `*`.
fn resource(arn: &str) -> Result<String, PolicyError> {
    if arn == "*" {
        return Ok("*".into());
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "s3", _, _, res] if !res.is_empty() => Ok((*res).to_owned()),
        _ => Err(malformed(format!("Policy has invalid resource: {arn}"))),
    }
}

fn conditions(v: &Value) -> Result<Vec<Condition>, PolicyError> {
    let map = v
        .as_object()
        .ok_or_else(|| malformed("Condition must be a JSON object"))?;
    let mut out = Vec::new();
    for (name, tests) in map {
        let (quantifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (Quantifier::Any, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (Quantifier::All, r)
        } else {
            (Quantifier::Single, name.as_str())
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(b) if b != "Null" => (b, true),
            _ => (rest, false),
        };
        let &(_, operator, negated) = OPERATORS
            .iter()
            .find(|(n, _, _)| *n == base)
            .ok_or_else(|| malformed(format!("Invalid Condition type : {name}")))?;
        let tests = tests
            .as_object()
            .ok_or_else(|| malformed(format!("{name} must map keys to values")))?;
        for (key, values) in tests {
            out.push(Condition {
                operator,
                negated,
                quantifier,
                if_exists,
                key: normalize_key(key),
                values: strings(values, "A condition value")?,
            });
        }
    }
    Ok(out)
}

/// A condition key with its name part lowercased and any tag key (after `/`) kept as is:
/// key names are case-insensitive, tag keys are not.
pub fn normalize_key(key: &str) -> String {
    match key.split_once('/') {
        Some((name, rest)) => format!("{}/{rest}", name.to_ascii_lowercase()),
        None => key.to_ascii_lowercase(),
    }
}

impl Statement {
    fn applies(&self, r: &Request) -> bool {
        let who = self.principals.items.iter().any(|p| p.matches(r.caller));
        if who == self.principals.negated {
            return false;
        }
        let act = self.actions.items.iter().any(|a| glob(a, r.action, true));
        if act == self.actions.negated {
            return false;
        }
        if let Some(res) = &self.resources {
            let hit = res.items.iter().any(|p| glob(p, r.resource, false));
            if hit == res.negated {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(r.context))
    }
}

impl Principal {
    fn matches(&self, caller: Option<Caller>) -> bool {
        match (self, caller) {
            (Principal::Anyone, _) => true,
            (Principal::Account(a), Some(c)) => a == c.account,
            (Principal::User { account, name }, Some(c)) => account == c.account && name == c.user,
            _ => false,
        }
    }
}

impl Condition {
    fn holds(&self, context: &dyn Fn(&str) -> Option<Vec<String>>) -> bool {
        let values = context(&self.key).filter(|v| !v.is_empty());
        if self.operator == Operator::Null {
            let wants_missing = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return values.is_none() == wants_missing;
        }
        let Some(values) = values else {
            // A key the request lacks: only IfExists, the negations and ForAllValues hold.
            return self.if_exists || self.negated || self.quantifier == Quantifier::All;
        };
        let test =
            |v: &String| self.values.iter().any(|p| compare(self.operator, v, p)) != self.negated;
        match self.quantifier {
            Quantifier::All => values.iter().all(test),
            Quantifier::Any => values.iter().any(test),
            // A negated test holds when no value matches.
            Quantifier::Single if self.negated => values
                .iter()
                .all(|v| !self.values.iter().any(|p| compare(self.operator, v, p))),
            Quantifier::Single => values.iter().any(test),
        }
    }

    /// Whether the condition ties the statement to fixed sources (S3's test of whether a
    /// policy is public).
    fn fixes_the_source(&self) -> bool {
        const SOURCE_KEYS: [&str; 9] = [
            "aws:sourceip",
            "aws:sourcearn",
            "aws:sourcevpc",
            "aws:sourcevpce",
            "aws:sourceowner",
            "aws:sourceaccount",
            "aws:userid",
            "aws:principalaccount",
            "aws:principalorgid",
        ];
        // ForAllValues holds for a caller without the key (anonymous included): no fix.
        !self.negated
            && !self.if_exists
            && self.quantifier == Quantifier::Single
            && self.operator != Operator::Null
            && SOURCE_KEYS.contains(&self.key.as_str())
            && self.values.iter().all(|v| !v.contains('*'))
    }
}

/// Whether request value `v` passes `op` against policy value `p`.
fn compare(op: Operator, v: &str, p: &str) -> bool {
    use Operator::*;
    let num = |s: &str| s.trim().parse::<f64>().ok();
    let date = |s: &str| parse_date(s.trim());
    match op {
        StringEquals | BinaryEquals | ArnEquals => v == p,
        StringEqualsIgnoreCase => v.to_lowercase() == p.to_lowercase(),
        StringLike | ArnLike => glob(p, v, false),
        Bool => v.eq_ignore_ascii_case(p),
        NumericEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => match (num(v), num(p)) {
            (Some(a), Some(b)) => ordered(op, a.partial_cmp(&b)),
            _ => false,
        },
        DateEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => match (date(v), date(p)) {
            (Some(a), Some(b)) => ordered(op, Some(a.cmp(&b))),
            _ => false,
        },
        IpAddress => in_network(v, p),
        Null => false,
    }
}

fn ordered(op: Operator, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    use Operator::*;
    matches!(
        (op, ord),
        (NumericEquals | DateEquals, Some(Equal))
            | (NumericLessThan | DateLessThan, Some(Less))
            | (
                NumericLessThanEquals | DateLessThanEquals,
                Some(Less | Equal)
            )
            | (NumericGreaterThan | DateGreaterThan, Some(Greater))
            | (
                NumericGreaterThanEquals | DateGreaterThanEquals,
                Some(Greater | Equal)
            )
    )
}

/// A date as seconds since the epoch: ISO 8601 / RFC 3339, or a number of seconds.
fn parse_date(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Whether address `v` is in network `p` (`a.b.c.d/n`, an IPv6 CIDR, or one address).
fn in_network(v: &str, p: &str) -> bool {
    let Ok(addr) = v.trim().parse::<IpAddr>() else {
        return false;
    };
    // An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`.
    let addr = addr.to_canonical();
    let (net, len) = match p.trim().split_once('/') {
        Some((n, l)) => (n, l.parse::<u32>().ok()),
        None => (p.trim(), None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    let net = net.to_canonical();
    let bits = |a: IpAddr| -> (u128, u32) {
        match a {
            IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    };
    let ((a, width), (n, net_width)) = (bits(addr), bits(net));
    if width != net_width {
        return false;
    }
    let len = len.unwrap_or(width).min(width);
    if len == 0 {
        return true;
    }
    let shift = width - len;
    (a >> shift) == (n >> shift)
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters and `?` one.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The current time for `aws:CurrentTime` and `aws:EpochTime`, as seconds.
pub fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(policy: &str, caller: Option<(&str, &str)>, action: &str, resource: &str) -> Decision {
        eval_with(policy, caller, action, resource, &|_| None)
    }

    fn eval_with(
        policy: &str,
        caller: Option<(&str, &str)>,
        action: &str,
        resource: &str,
        context: &dyn Fn(&str) -> Option<Vec<String>>,
    ) -> Decision {
        let p = Policy::parse(policy).expect("policy");
        p.evaluate(&Request {
            caller: caller.map(|(account, user)| Caller { account, user }),
            action,
            resource,
            context,
        })
    }

    const ALICE: Option<(&str, &str)> = Some(("111111111111", "alice"));
    const BOB: Option<(&str, &str)> = Some(("222222222222", "bob"));

    #[test]
    fn globs() {
        assert!(glob("s3:Get*", "s3:getobject", true));
        assert!(!glob("s3:Get*", "s3:getobject", false));
        assert!(glob("b/*", "b/x/y", false));
        assert!(glob("b/?", "b/x", false));
        assert!(!glob("b/?", "b/xy", false));
        assert!(glob("*", "", false));
        assert!(glob("a*b*c", "aXXbYYc", false));
        assert!(!glob("a*b*c", "aXXbYY", false));
        assert!(glob("B/log/", "B/log/", false) && !glob("B/log/", "B/log/x", false));
    }

    #[test]
    fn principals_actions_and_resources() {
        let p = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": ["arn:aws:iam::222222222222:root"]},
            "Action": ["s3:GetObject", "s3:List*"], "Resource": "arn:aws:s3:::b/public/*"}]}"#;
        assert_eq!(eval(p, BOB, "s3:GetObject", "b/public/x"), Decision::Allow);
        assert_eq!(eval(p, BOB, "s3:ListBucket", "b/public/x"), Decision::Allow);
        assert_eq!(
            eval(p, BOB, "s3:GetObject", "b/private/x"),
            Decision::Silent
        );
        assert_eq!(eval(p, BOB, "s3:PutObject", "b/public/x"), Decision::Silent);
        assert_eq!(
            eval(p, ALICE, "s3:GetObject", "b/public/x"),
            Decision::Silent
        );
        assert_eq!(
            eval(p, None, "s3:GetObject", "b/public/x"),
            Decision::Silent
        );

        let user = r#"{"Statement": {"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::222222222222:user/team/bob"},
            "Action": "s3:*"}}"#;
        assert_eq!(
            eval(user, BOB, "s3:DeleteObject", "any/thing"),
            Decision::Allow
        );
        assert_eq!(
            eval(
                user,
                Some(("222222222222", "carol")),
                "s3:DeleteObject",
                "b"
            ),
            Decision::Silent
        );

        let deny = r#"{"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]},
            {"Effect": "Deny", "Principal": {"AWS": "*"}, "NotAction": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}]}"#;
        assert_eq!(eval(deny, None, "s3:GetObject", "b/k"), Decision::Allow);
        assert_eq!(eval(deny, ALICE, "s3:PutObject", "b/k"), Decision::Deny);
        assert_eq!(eval(deny, ALICE, "s3:ListBucket", "b"), Decision::Allow);

        let not_principal = r#"{"Statement": {"Effect": "Deny",
            "NotPrincipal": {"AWS": "111111111111"}, "Action": "s3:*", "Resource": "*"}}"#;
        assert_eq!(
            eval(not_principal, ALICE, "s3:GetObject", "b/k"),
            Decision::Silent
        );
        assert_eq!(
            eval(not_principal, BOB, "s3:GetObject", "b/k"),
            Decision::Deny
        );
        assert_eq!(
            eval(not_principal, None, "s3:GetObject", "b/k"),
            Decision::Deny
        );
    }

    #[test]
    fn conditions() {
        let p = r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringEquals": {"s3:ExistingObjectTag/security": "public"},
                          "NumericLessThanEquals": {"s3:max-keys": "10"}}}]}"#;
        let ctx = |tag: &'static str, max: &'static str| {
            move |k: &str| match k {
                "s3:existingobjecttag/security" => Some(vec![tag.to_owned()]),
                "s3:max-keys" => Some(vec![max.to_owned()]),
                _ => None,
            }
        };
        assert_eq!(
            eval_with(p, BOB, "s3:GetObject", "b/k", &ctx("public", "5")),
            Decision::Allow
        );
        assert_eq!(
            eval_with(p, BOB, "s3:GetObject", "b/k", &ctx("private", "5")),
            Decision::Silent
        );
        assert_eq!(
            eval_with(p, BOB, "s3:GetObject", "b/k", &ctx("public", "50")),
            Decision::Silent
        );
        assert_eq!(eval(p, BOB, "s3:GetObject", "b/k"), Decision::Silent);

        // Missing keys: negations and IfExists hold, Null says whether the key is there.
        let deny = r#"{"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/*",
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}}]}"#;
        let sse = |v: &'static str| {
            move |k: &str| (k == "s3:x-amz-server-side-encryption").then(|| vec![v.to_owned()])
        };
        assert_eq!(eval(deny, ALICE, "s3:PutObject", "b/k"), Decision::Deny);
        assert_eq!(
            eval_with(deny, ALICE, "s3:PutObject", "b/k", &sse("AES192")),
            Decision::Deny
        );
        assert_eq!(
            eval_with(deny, ALICE, "s3:PutObject", "b/k", &sse("AES256")),
            Decision::Silent
        );
        let null = r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}}}"#;
        assert_eq!(eval(null, ALICE, "s3:PutObject", "b/k"), Decision::Deny);
        assert_eq!(
            eval_with(null, ALICE, "s3:PutObject", "b/k", &sse("AES256")),
            Decision::Silent
        );
        let like = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Condition": {"StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"},
                          "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "::1/128"]}}}}"#;
        let from = |ip: &'static str, referer: Option<&'static str>| {
            move |k: &str| match k {
                "aws:sourceip" => Some(vec![ip.to_owned()]),
                "aws:referer" => referer.map(|r| vec![r.to_owned()]),
                _ => None,
            }
        };
        assert_eq!(
            eval_with(like, None, "s3:GetObject", "b/k", &from("10.1.2.3", None)),
            Decision::Allow
        );
        assert_eq!(
            eval_with(
                like,
                None,
                "s3:GetObject",
                "b/k",
                &from("::1", Some("http://www.example.com/a"))
            ),
            Decision::Allow
        );
        assert_eq!(
            eval_with(
                like,
                None,
                "s3:GetObject",
                "b/k",
                &from("10.1.2.3", Some("http://example.com"))
            ),
            Decision::Silent
        );
        assert_eq!(
            eval_with(like, None, "s3:GetObject", "b/k", &from("11.0.0.1", None)),
            Decision::Silent
        );
        // An IPv4 client of a dual-stack listener is still in its IPv4 network.
        assert_eq!(
            eval_with(
                like,
                None,
                "s3:GetObject",
                "b/k",
                &from("::ffff:10.1.2.3", None)
            ),
            Decision::Allow
        );
        let keys = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
            "Condition": {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["a", "b"]}}}}"#;
        let tags = |v: Vec<&'static str>| {
            move |k: &str| {
                (k == "s3:requestobjecttagkeys").then(|| v.iter().map(|s| s.to_string()).collect())
            }
        };
        assert_eq!(
            eval_with(keys, None, "s3:PutObject", "b/k", &tags(vec!["a"])),
            Decision::Allow
        );
        assert_eq!(
            eval_with(keys, None, "s3:PutObject", "b/k", &tags(vec!["a", "c"])),
            Decision::Silent
        );
    }

    #[test]
    fn documents_accepted_and_refused() {
        // What S3 clients and the conformance suites put: accepted.
        for ok in [
            r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:PutBucketLogging"]}]}"#,
            r#"{"Statement": [{"Sid": "same", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::s3tenant1:root"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::*"},
                              {"Sid": "same", "Effect": "Allow", "Principal": {"Service": "logging.s3.amazonaws.com"}, "Action": "s3:PutObject", "Resource": "arn:aws:s3::tenant:b/log/",
                               "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::src"}}}]}"#,
        ] {
            Policy::parse(ok).expect(ok);
        }
        for bad in [
            "",
            "[]",
            "not json",
            r#"{"Statement": []}"#,
            r#"{"Version": "2020-01-01", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*"}}"#,
            r#"{"Statement": {"Principal": "*", "Action": "s3:*"}}"#,
            r#"{"Statement": {"Effect": "Permit", "Principal": "*", "Action": "s3:*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "1"}, "Action": "s3:*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ec2:RunInstances"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "bucket"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Condition": {"StringSortOf": {"a": "b"}}}}"#,
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        let big = format!(
            r#"{{"Statement": {{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": [{}]}}}}"#,
            vec![r#""arn:aws:s3:::bucket-with-a-long-name/*""#; 600].join(",")
        );
        assert!(Policy::parse(&big).is_err());
    }

    #[test]
    fn public_policies() {
        let public = |p: &str| Policy::parse(p).expect("policy").is_public();
        assert!(public(
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b"}}"#
        ));
        assert!(!public(
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}}}}"#
        ));
        assert!(!public(
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::s3tenant1:root"}, "Action": "s3:ListBucket"}}"#
        ));
        assert!(!public(
            r#"{"Statement": {"Effect": "Deny", "Principal": "*", "Action": "s3:*"}}"#
        ));
        // ForAllValues holds for callers without the key: it fixes nothing.
        assert!(public(
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Condition": {"ForAllValues:StringEquals": {"aws:PrincipalAccount": "111111111111"}}}}"#
        ));
    }
}
