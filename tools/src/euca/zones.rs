//! Where things run: `euca-describe-availability-zones`, `euca-describe-regions`.

use clap::Parser;

use super::{Command, Ec2Args, EucaError, Filters, Params};

/// Display availability zones within the current region (`verbose` also shows, on
/// Eucalyptus, the capacity left for each instance type).
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeAvailabilityZones {
    /// Limit results to specific availability zones.
    #[arg(value_name = "ZONE")]
    zones: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeAvailabilityZones {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.list("ZoneName", &self.zones);
        self.filters.add_to(&mut params);
        let response = self
            .ec2
            .client()?
            .call("DescribeAvailabilityZones", &params)?;
        let mut table = self.ec2.table();
        for zone in response.items("availabilityZoneInfo") {
            let messages: Vec<&str> = zone
                .items("messageSet")
                .map(|m| m.field("message"))
                .collect();
            table.row(&[
                "AVAILABILITYZONE",
                zone.field("zoneName"),
                zone.field("zoneState"),
                &messages.join(", "),
            ])?;
        }
        Ok(())
    }
}

/// Display information about regions.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeRegions {
    /// Limit results to specific regions.
    #[arg(value_name = "REGION")]
    regions: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeRegions {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.list("RegionName", &self.regions);
        self.filters.add_to(&mut params);
        let response = self.ec2.client()?.call("DescribeRegions", &params)?;
        let mut table = self.ec2.table();
        for region in response.items("regionInfo") {
            table.row(&[
                "REGION",
                region.field("regionName"),
                region.field("regionEndpoint"),
            ])?;
        }
        Ok(())
    }
}
