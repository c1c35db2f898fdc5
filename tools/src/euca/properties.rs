//! Cloud properties, Eucalyptus' administration settings: `euca-describe-properties` and
//! `euca-modify-property` (the cloud admin's `DescribeProperties` and `ModifyPropertyValue`
//! actions, posted to the EC2 endpoint).

use clap::Parser;

use super::{Command, Ec2Args, EucaError, Params};

/// Show the cloud's properties.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeProperties {
    /// Limit results to properties with these names or name prefixes.
    #[arg(value_name = "PROPERTY")]
    properties: Vec<String>,
    /// Also show each property's description.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeProperties {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.list("Property", &self.properties);
        let response = self.ec2.client()?.call("DescribeProperties", &params)?;
        let mut table = self.ec2.table();
        for property in response.items("properties") {
            let name = property.field("name");
            table.row(&["PROPERTY", name, property.field("value")])?;
            if self.verbose {
                table.row(&["DESCRIPTION", name, property.field("description")])?;
            }
        }
        Ok(())
    }
}

/// Change, or reset to its default, one of the cloud's properties.
#[derive(Parser, Debug)]
#[command(version)]
pub struct ModifyProperty {
    /// The property and its new value.
    #[arg(short = 'p', long = "property", value_name = "NAME=VALUE",
          value_parser = parse_setting, required_unless_present = "reset", conflicts_with = "reset")]
    property: Option<(String, String)>,
    /// Reset the property to its default value.
    #[arg(short = 'r', long = "reset", value_name = "NAME")]
    reset: Option<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

fn parse_setting(text: &str) -> Result<(String, String), String> {
    match super::split_assignment(text) {
        (name, Some(value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("property {text:?} must have the form NAME=VALUE")),
    }
}

impl ModifyProperty {
    fn params(&self) -> Params {
        let mut params = Params::new();
        match (&self.property, &self.reset) {
            (Some((name, value)), _) => params.set("Name", name).set("Value", value),
            (None, Some(name)) => params.set("Name", name).set("Reset", "true"),
            (None, None) => &mut params,
        };
        params
    }
}

impl Command for ModifyProperty {
    fn run(self) -> Result<(), EucaError> {
        let params = self.params();
        let response = self.ec2.client()?.call("ModifyPropertyValue", &params)?;
        let change = format!(
            "{} was {}",
            response.field("value"),
            response.field("oldValue")
        );
        self.ec2
            .table()
            .row(&["PROPERTY", response.field("name"), &change])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_or_reset_one_property() {
        let set = ModifyProperty::try_parse_from(["m", "-p", "a.b=c=d"]).unwrap();
        let pairs: Vec<(String, String)> = set.params().pairs().to_vec();
        assert_eq!(
            pairs,
            [
                ("Name".to_owned(), "a.b".to_owned()),
                ("Value".to_owned(), "c=d".to_owned())
            ]
        );
        let reset = ModifyProperty::try_parse_from(["m", "-r", "a.b"]).unwrap();
        assert_eq!(
            reset.params().pairs()[1],
            ("Reset".to_owned(), "true".to_owned())
        );
        assert!(ModifyProperty::try_parse_from(["m"]).is_err());
        assert!(ModifyProperty::try_parse_from(["m", "-p", "novalue"]).is_err());
        assert!(ModifyProperty::try_parse_from(["m", "-p", "a=1", "-r", "a"]).is_err());
    }
}
