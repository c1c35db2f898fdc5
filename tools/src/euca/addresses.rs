//! Elastic IP addresses: `euca-allocate-address`, `euca-release-address`,
//! `euca-associate-address`, `euca-disassociate-address`, `euca-describe-addresses`.

use clap::Parser;

use super::{Command, Ec2Args, EucaError, Filters, Params};

/// Allocate a public IP address.
#[derive(Parser, Debug)]
#[command(version)]
pub struct AllocateAddress {
    /// "vpc" to allocate the address for use in a VPC.
    #[arg(short = 'd', long = "domain", value_parser = ["vpc"])]
    domain: Option<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for AllocateAddress {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set_opt("Domain", self.domain.as_deref());
        let response = self.ec2.client()?.call("AllocateAddress", &params)?;
        self.ec2.table().row(&[
            "ADDRESS",
            response.field("publicIp"),
            response.value("domain").unwrap_or("standard"),
            response.field("allocationId"),
        ])
    }
}

/// Release an elastic IP address.
#[derive(Parser, Debug)]
#[command(version)]
pub struct ReleaseAddress {
    /// The address to release (or a VPC allocation ID, eipalloc-...).
    #[arg(value_name = "ADDRESS")]
    address: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for ReleaseAddress {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set(address_param(&self.address), &self.address);
        self.ec2.client()?.call("ReleaseAddress", &params)?;
        self.ec2.table().row(&["ADDRESS", &self.address])
    }
}

/// `PublicIp`, or `AllocationId` for a VPC allocation ID.
fn address_param(address: &str) -> &'static str {
    if address.starts_with("eipalloc-") {
        "AllocationId"
    } else {
        "PublicIp"
    }
}

/// Associate an elastic IP address with a running instance.
#[derive(Parser, Debug)]
#[command(version)]
pub struct AssociateAddress {
    /// The IP address to associate.
    #[arg(value_name = "ADDRESS")]
    address: String,
    /// ID of the instance to associate the address with (required).
    #[arg(short = 'i', long = "instance-id", value_name = "INSTANCE")]
    instance_id: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for AssociateAddress {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params
            .set(address_param(&self.address), &self.address)
            .set("InstanceId", &self.instance_id);
        self.ec2.client()?.call("AssociateAddress", &params)?;
        self.ec2
            .table()
            .row(&["ADDRESS", &self.address, &self.instance_id])
    }
}

/// Disassociate an elastic IP address from an instance.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DisassociateAddress {
    /// The elastic IP address to disassociate.
    #[arg(value_name = "ADDRESS")]
    address: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DisassociateAddress {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set("PublicIp", &self.address);
        self.ec2.client()?.call("DisassociateAddress", &params)?;
        self.ec2.table().row(&["ADDRESS", &self.address])
    }
}

/// Show information about elastic IP addresses.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeAddresses {
    /// Limit results to specific elastic IP addresses or VPC allocation IDs.
    #[arg(value_name = "ADDRESS")]
    addresses: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeAddresses {
    fn run(self) -> Result<(), EucaError> {
        let (allocations, ips): (Vec<&String>, Vec<&String>) = self
            .addresses
            .iter()
            .partition(|a| a.starts_with("eipalloc-"));
        let mut params = Params::new();
        params
            .list("PublicIp", &ips)
            .list("AllocationId", &allocations);
        self.filters.add_to(&mut params);
        let response = self.ec2.client()?.call("DescribeAddresses", &params)?;
        let mut table = self.ec2.table();
        for address in response.items("addressesSet") {
            table.row(&[
                "ADDRESS",
                address.field("publicIp"),
                address.field("instanceId"),
                address.value("domain").unwrap_or("standard"),
                address.field("allocationId"),
                address.field("associationId"),
                address.field("networkInterfaceId"),
                address.field("privateIpAddress"),
            ])?;
        }
        Ok(())
    }
}
