//! Resource tags: `euca-create-tags`, `euca-delete-tags`, `euca-describe-tags`.

use clap::Parser;

use super::{print_tag, split_assignment, Command, Ec2Args, EucaError, Filters, Params};

/// `ResourceId.N` and `Tag.N.Key`/`Tag.N.Value`; `value_if_absent` is what a `--tag KEY`
/// without `=` sends as its value (create: the empty string; delete: nothing, any value).
fn tag_params(resources: &[String], tags: &[String], value_if_absent: Option<&str>) -> Params {
    let mut params = Params::new();
    params.list("ResourceId", resources);
    for (n, tag) in tags.iter().enumerate() {
        let (key, value) = split_assignment(tag);
        params
            .set(format!("Tag.{}.Key", n + 1), key)
            .set_opt(&format!("Tag.{}.Value", n + 1), value.or(value_if_absent));
    }
    params
}

/// Add or overwrite tags for one or more resources.
#[derive(Parser, Debug)]
#[command(version)]
pub struct CreateTags {
    /// ID(s) of the resource(s) to tag.
    #[arg(value_name = "RESOURCE", required = true)]
    resources: Vec<String>,
    /// Key and optional value of the tag to create, separated by "=" (no value: the empty
    /// string). At least one.
    #[arg(long = "tag", value_name = "KEY[=VALUE]", required = true)]
    tags: Vec<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for CreateTags {
    fn run(self) -> Result<(), EucaError> {
        let params = tag_params(&self.resources, &self.tags, Some(""));
        self.ec2.client()?.call("CreateTags", &params)?;
        let mut table = self.ec2.table();
        for resource in &self.resources {
            for tag in &self.tags {
                let (key, value) = split_assignment(tag);
                print_tag(&mut table, resource, key, value.unwrap_or(""))?;
            }
        }
        Ok(())
    }
}

/// Delete tags from one or more resources.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DeleteTags {
    /// ID(s) of the resource(s) to un-tag.
    #[arg(value_name = "RESOURCE", required = true)]
    resources: Vec<String>,
    /// Key and optional value of the tag to delete: with a value (even empty, "KEY="), only
    /// if the tag has it; without, whatever its value. At least one.
    #[arg(long = "tag", value_name = "KEY[=[VALUE]]", required = true)]
    tags: Vec<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DeleteTags {
    fn run(self) -> Result<(), EucaError> {
        let params = tag_params(&self.resources, &self.tags, None);
        self.ec2.client()?.call("DeleteTags", &params)?;
        Ok(())
    }
}

/// List tags associated with your account's resources.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeTags {
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeTags {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        self.filters.add_to(&mut params);
        let response = self.ec2.client()?.call("DescribeTags", &params)?;
        let mut table = self.ec2.table();
        for tag in response.items("tagSet") {
            // euca2ools 3.4 prints the ID before the type here (unlike its other TAG lines).
            table.row(&[
                "TAG",
                tag.field("resourceId"),
                tag.field("resourceType"),
                tag.field("key"),
                tag.field("value"),
            ])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(params: &Params) -> Vec<String> {
        params
            .pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    #[test]
    fn create_sends_empty_values_delete_sends_none() {
        let resources = ["emi-1".to_owned(), "sg-2".to_owned()];
        let tags = [
            "Name=web".to_owned(),
            "flag".to_owned(),
            "empty=".to_owned(),
        ];
        assert_eq!(
            names(&tag_params(&resources, &tags, Some(""))),
            [
                "ResourceId.1=emi-1",
                "ResourceId.2=sg-2",
                "Tag.1.Key=Name",
                "Tag.1.Value=web",
                "Tag.2.Key=flag",
                "Tag.2.Value=",
                "Tag.3.Key=empty",
                "Tag.3.Value=",
            ]
        );
        assert_eq!(
            names(&tag_params(&resources[..1], &tags, None)),
            [
                "ResourceId.1=emi-1",
                "Tag.1.Key=Name",
                "Tag.1.Value=web",
                "Tag.2.Key=flag",
                "Tag.3.Key=empty",
                "Tag.3.Value=",
            ]
        );
    }
}
