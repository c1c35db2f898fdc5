//! Tags: key/value labels an account puts on its own images, security groups, instances and
//! addresses (`CreateTags`, `DeleteTags`, `DescribeTags`), and the helpers the resources'
//! files use to show tags (`tagSet`) and to drop them with the resource.
//!
//! Tags are stored per resource and account (`tag/RESOURCE/ACCOUNT/KEY`), so the tags of a
//! resource are one prefix scan and deleting a resource deletes its tags in the same batch.

use serde::{Deserialize, Serialize};

use crate::ec2::{apply_filters, is_resource_id, Call, Cloud};
use crate::query::Xml;
use crate::state::{Batch, Record};
use crate::{addresses, groups, images, QueryError, Resource};

/// Most tags one resource may carry.
const MAX_TAGS: usize = 50;
/// Longest tag key, in characters.
const MAX_KEY_CHARS: usize = 127;
/// Longest tag value, in characters.
const MAX_VALUE_CHARS: usize = 255;

/// One tag of one account on one resource.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tag {
    resource_id: String,
    resource_type: String,
    account_id: String,
    key: String,
    value: String,
}

impl records::Versioned for Tag {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Tag {
    const TABLE: &'static str = "tag/";
}

fn resource_prefix(resource_id: &str) -> String {
    format!("{resource_id}/")
}

fn account_prefix(resource_id: &str, account_id: &str) -> String {
    format!("{resource_id}/{account_id}/")
}

fn tag_key(resource_id: &str, account_id: &str, key: &str) -> String {
    format!("{resource_id}/{account_id}/{key}")
}

/// The caller's tags on `resource_id`, sorted by key: what a Describe action shows in the
/// resource's `tagSet`.
pub fn tags_of(call: &Call<'_>, resource_id: &str) -> Result<Vec<(String, String)>, QueryError> {
    Ok(call
        .cloud
        .state
        .scan::<Tag>(&account_prefix(resource_id, call.account()))?
        .into_iter()
        .map(|(_, tag)| (tag.key, tag.value))
        .collect())
}

/// Writes `<tagSet>` with one `item{key,value}` per tag (`<tagSet/>` when there are none).
pub fn tag_set(x: &mut Xml, tags: &[(String, String)]) {
    x.list("tagSet", tags, |x, (key, value)| {
        x.elem("key", key).elem("value", value);
    });
}

/// Adds to `batch` the deletion of every tag on `resource_id` (of any account), so that a
/// resource and its tags go in one atomic write.
pub fn delete_all(cloud: &Cloud, batch: &mut Batch, resource_id: &str) -> Result<(), QueryError> {
    for (key, _) in cloud.state.scan::<Tag>(&resource_prefix(resource_id))? {
        batch.delete::<Tag>(&key);
    }
    Ok(())
}

/// The kinds of resources that take tags, found from their id's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taggable {
    Image,
    Group,
    Instance,
    Address,
}

impl Taggable {
    /// The kind of `id`, or `None` for an id that names nothing taggable.
    fn of(id: &str) -> Option<Taggable> {
        [
            ("emi", Taggable::Image),
            ("eki", Taggable::Image),
            ("eri", Taggable::Image),
            ("sg", Taggable::Group),
            ("i", Taggable::Instance),
            ("eipalloc", Taggable::Address),
        ]
        .into_iter()
        .find(|(prefix, _)| is_resource_id(id, prefix))
        .map(|(_, kind)| kind)
    }

    /// The `resourceType` DescribeTags shows.
    fn name(self) -> &'static str {
        match self {
            Taggable::Image => "image",
            Taggable::Group => "security-group",
            Taggable::Instance => "instance",
            Taggable::Address => "elastic-ip",
        }
    }

    /// The error for an id of this kind that does not exist or is not the caller's.
    fn not_found(self, id: &str) -> QueryError {
        let resource = match self {
            Taggable::Image => Resource::Image,
            Taggable::Group => Resource::Group,
            Taggable::Instance => Resource::Instance,
            Taggable::Address => Resource::Address,
        };
        QueryError::NotFound(resource, id.to_owned())
    }
}

/// Checks that every id names a resource of the caller; their kinds, in order.
fn own_resources<'a>(
    call: &Call<'_>,
    ids: &[&'a str],
) -> Result<Vec<(&'a str, Taggable)>, QueryError> {
    if ids.is_empty() {
        return Err(QueryError::MissingParameter("ResourceId.1".to_owned()));
    }
    ids.iter()
        .map(|&id| {
            let kind = Taggable::of(id)
                .ok_or_else(|| QueryError::NotFound(Resource::Id, id.to_owned()))?;
            let owner = match kind {
                Taggable::Image => images::owner_of(call.cloud, id)?,
                Taggable::Group => groups::owner_of(call.cloud, id)?,
                Taggable::Instance => crate::instances::owner_of(call.cloud, id)?,
                Taggable::Address => addresses::owner_of(call.cloud, id)?,
            };
            if owner.as_deref() == Some(call.account()) {
                Ok((id, kind))
            } else {
                Err(kind.not_found(id))
            }
        })
        .collect()
}

/// Checks a tag key and value against EC2's rules; a sentence saying what is wrong.
fn check_tag(key: &str, value: &str) -> Result<(), QueryError> {
    // XML 1.0 cannot carry these, so a tag holding one would break every response showing it.
    let unwritable = |c: char| {
        (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    if key.chars().chain(value.chars()).any(unwritable) {
        return Err(QueryError::Validation(
            "Tag keys and values cannot hold control characters.".to_owned(),
        ));
    }
    if key.is_empty() {
        return Err(QueryError::Validation(
            "A tag key must not be empty.".to_owned(),
        ));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(QueryError::Validation(format!(
            "The tag key '{key}' is longer than {MAX_KEY_CHARS} characters."
        )));
    }
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(QueryError::Validation(format!(
            "The tag key '{key}' starts with 'aws:', which is reserved."
        )));
    }
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(QueryError::Validation(format!(
            "The value of tag '{key}' is longer than {MAX_VALUE_CHARS} characters."
        )));
    }
    Ok(())
}

/// `Tag.N.Key`: needed, but may be empty (an empty key is an invalid value, not a missing
/// parameter).
fn tag_key_param<'a>(call: &'a Call<'_>, i: u32) -> Result<&'a str, QueryError> {
    let name = format!("Tag.{i}.Key");
    call.params
        .get(&name)
        .ok_or(QueryError::MissingParameter(name))
}

/// `CreateTags`: adds or overwrites tags `Tag.N.{Key,Value}` on resources `ResourceId.N`.
pub fn create(call: &Call<'_>) -> Result<String, QueryError> {
    let ids = call.params.list("ResourceId");
    let indexes = call.params.indexes("Tag");
    if indexes.is_empty() {
        return Err(QueryError::MissingParameter("Tag.1.Key".to_owned()));
    }
    let mut wanted: Vec<(String, String)> = Vec::with_capacity(indexes.len());
    for i in indexes {
        let key = tag_key_param(call, i)?;
        let value = call.params.get(&format!("Tag.{i}.Value")).unwrap_or("");
        check_tag(key, value)?;
        if wanted.iter().any(|(k, _)| k == key) {
            return Err(QueryError::Validation(format!(
                "The tag key '{key}' is given more than once."
            )));
        }
        wanted.push((key.to_owned(), value.to_owned()));
    }
    let _guard = call.cloud.state.exclusive();
    let resources = own_resources(call, &ids)?;
    let mut batch = Batch::new();
    for (id, kind) in resources {
        let existing = tags_of(call, id)?;
        let added = wanted
            .iter()
            .filter(|(k, _)| !existing.iter().any(|(e, _)| e == k))
            .count();
        if existing.len() + added > MAX_TAGS {
            return Err(QueryError::TagLimitExceeded(format!(
                "The resource {id} would have more than {MAX_TAGS} tags."
            )));
        }
        for (key, value) in &wanted {
            batch.put(
                &tag_key(id, call.account(), key),
                &Tag {
                    resource_id: id.to_owned(),
                    resource_type: kind.name().to_owned(),
                    account_id: call.account().to_owned(),
                    key: key.clone(),
                    value: value.clone(),
                },
            );
        }
    }
    call.cloud.state.commit(batch)?;
    Ok("<return>true</return>".to_owned())
}

/// `DeleteTags`: removes tags `Tag.N.Key` from resources `ResourceId.N` (only where the
/// value equals `Tag.N.Value`, when one is given); without `Tag.N`, all the caller's tags of
/// those resources.
pub fn delete(call: &Call<'_>) -> Result<String, QueryError> {
    let ids = call.params.list("ResourceId");
    let mut selectors: Vec<(&str, Option<&str>)> = Vec::new();
    for i in call.params.indexes("Tag") {
        let key = tag_key_param(call, i)?;
        selectors.push((key, call.params.get(&format!("Tag.{i}.Value"))));
    }
    let _guard = call.cloud.state.exclusive();
    let resources = own_resources(call, &ids)?;
    let mut batch = Batch::new();
    for (id, _) in resources {
        for (key, value) in tags_of(call, id)? {
            let doomed = selectors.is_empty()
                || selectors
                    .iter()
                    .any(|(k, v)| *k == key && v.is_none_or(|v| v == value));
            if doomed {
                batch.delete::<Tag>(&tag_key(id, call.account(), &key));
            }
        }
    }
    call.cloud.state.commit(batch)?;
    Ok("<return>true</return>".to_owned())
}

/// `DescribeTags`: the caller's tags, narrowed by filters `key`, `value`, `resource-id` and
/// `resource-type`.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let filters = call.params.filters()?;
    let mut mine: Vec<Tag> = call
        .cloud
        .state
        .scan::<Tag>("")?
        .into_iter()
        .map(|(_, tag)| tag)
        .filter(|tag| tag.account_id == call.account())
        .collect();
    mine.sort_by(|a, b| (&a.resource_id, &a.key).cmp(&(&b.resource_id, &b.key)));
    let shown = apply_filters(
        &filters,
        mine,
        |tag, name| {
            let field = match name {
                "key" => &tag.key,
                "value" => &tag.value,
                "resource-id" => &tag.resource_id,
                "resource-type" => &tag.resource_type,
                _ => return None,
            };
            Some(vec![field.clone()])
        },
        |tag| vec![(tag.key.clone(), tag.value.clone())],
    )?;
    let mut x = Xml::new();
    x.list("tagSet", shown, |x, tag| {
        x.elem("resourceId", &tag.resource_id)
            .elem("resourceType", &tag.resource_type)
            .elem("key", &tag.key)
            .elem("value", &tag.value);
    });
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_limits() {
        assert!(check_tag("Name", "").is_ok());
        assert!(check_tag(&"k".repeat(127), &"v".repeat(255)).is_ok());
        assert!(check_tag(&"é".repeat(127), &"ü".repeat(255)).is_ok());
        assert!(check_tag("", "v").is_err());
        assert!(check_tag(&"k".repeat(128), "v").is_err());
        assert!(check_tag("k", &"v".repeat(256)).is_err());
        assert!(check_tag("aws:cloudformation", "v").is_err());
        assert!(check_tag("AWS:x", "v").is_err());
        assert!(check_tag("awsome", "v").is_ok());
        assert!(check_tag("é", "v").is_ok());
        assert!(check_tag("multi\nline", "tab\there").is_ok());
        assert!(check_tag("k\u{1}", "v").is_err());
        assert!(check_tag("k", "v\0").is_err());
        assert!(check_tag("k", "\u{FFFF}").is_err());
    }

    #[test]
    fn resource_kinds_from_ids() {
        assert_eq!(Taggable::of("emi-0123abcd"), Some(Taggable::Image));
        assert_eq!(Taggable::of("eki-0123abcd"), Some(Taggable::Image));
        assert_eq!(Taggable::of("eri-0123abcd"), Some(Taggable::Image));
        assert_eq!(Taggable::of("sg-0123abcd"), Some(Taggable::Group));
        assert_eq!(Taggable::of("i-0123abcd"), Some(Taggable::Instance));
        assert_eq!(Taggable::of("eipalloc-0123abcd"), Some(Taggable::Address));
        for unknown in ["vol-0123abcd", "emi-xyz", "sg-", "0123abcd", "i-0123abcd/x"] {
            assert_eq!(Taggable::of(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn keys_keep_resources_apart() {
        // `sg-1` must not scan the tags of `sg-12`.
        assert!(!tag_key("sg-12", "a", "k").starts_with(&resource_prefix("sg-1")));
        assert!(tag_key("sg-1", "a", "k/x").starts_with(&account_prefix("sg-1", "a")));
    }
}
