//! Security groups: `euca-create-group` (and its euca2ools 1.x name `euca-add-group`),
//! `euca-delete-group`, `euca-describe-groups`, `euca-authorize`, `euca-revoke`.

use std::ffi::OsString;

use clap::Parser;

use super::{print_tag, Command, Ec2Args, EucaError, Filters, Params};

/// Whether a group argument is an ID (`sg-...`) rather than a name.
fn is_group_id(group: &str) -> bool {
    group.starts_with("sg-")
}

/// Create a new security group.
#[derive(Parser, Debug)]
#[command(version)]
pub struct CreateGroup {
    /// Name of the new group.
    #[arg(value_name = "GROUP")]
    group_name: String,
    /// Description of the new group (required).
    #[arg(short = 'd', long = "description", value_name = "DESC")]
    description: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for CreateGroup {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params
            .set("GroupName", &self.group_name)
            .set("GroupDescription", &self.description);
        let response = self.ec2.client()?.call("CreateSecurityGroup", &params)?;
        self.ec2.table().row(&[
            "GROUP",
            response.field("groupId"),
            &self.group_name,
            &self.description,
        ])
    }
}

/// Delete a security group.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DeleteGroup {
    /// Name or ID of the security group to delete.
    #[arg(value_name = "GROUP")]
    group: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DeleteGroup {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        let by = if is_group_id(&self.group) {
            "GroupId"
        } else {
            "GroupName"
        };
        params.set(by, &self.group);
        let response = self.ec2.client()?.call("DeleteSecurityGroup", &params)?;
        self.ec2.table().row(&["RETURN", response.field("return")])
    }
}

/// Show information about security groups.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeGroups {
    /// Limit results to specific security groups (names or IDs).
    #[arg(value_name = "GROUP")]
    groups: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeGroups {
    fn run(self) -> Result<(), EucaError> {
        let (ids, names): (Vec<&String>, Vec<&String>) =
            self.groups.iter().partition(|g| is_group_id(g));
        let mut params = Params::new();
        params.list("GroupName", &names).list("GroupId", &ids);
        self.filters.add_to(&mut params);
        let response = self.ec2.client()?.call("DescribeSecurityGroups", &params)?;
        let mut table = self.ec2.table();
        for group in response.items("securityGroupInfo") {
            let owner = group.field("ownerId");
            let name = group.field("groupName");
            table.row(&[
                "GROUP",
                group.field("groupId"),
                owner,
                name,
                group.field("groupDescription"),
                group.field("vpcId"),
            ])?;
            for (list, direction, way) in [
                ("ipPermissions", "FROM", "ingress"),
                ("ipPermissionsEgress", "TO", "egress"),
            ] {
                for perm in group.items(list) {
                    let base = [
                        "PERMISSION",
                        owner,
                        name,
                        "ALLOWS",
                        perm.field("ipProtocol"),
                        perm.field("fromPort"),
                        perm.field("toPort"),
                        direction,
                    ];
                    for range in perm.items("ipRanges") {
                        let mut row = base.to_vec();
                        row.extend(["CIDR", range.field("cidrIp"), way]);
                        table.row(&row)?;
                    }
                    for other in perm.items("groups") {
                        let mut row = base.to_vec();
                        row.extend(["USER", other.field("userId")]);
                        match other.field("groupId") {
                            "" => row.extend(["GRPNAME", other.field("groupName")]),
                            id => row.extend(["ID", id]),
                        }
                        row.push(way);
                        table.row(&row)?;
                    }
                }
            }
            let tagged = match group.field("groupId") {
                "" => name,
                id => id,
            };
            for tag in group.items("tagSet") {
                print_tag(&mut table, tagged, tag.field("key"), tag.field("value"))?;
            }
        }
        Ok(())
    }
}

/// The flags of `euca-authorize` and `euca-revoke`: one rule of a group.
#[derive(clap::Args, Debug)]
pub struct Rule {
    /// Name or ID of the security group to modify.
    #[arg(value_name = "GROUP")]
    group: String,
    /// The protocol to affect: tcp, udp, icmp, -1/all, or a protocol number.
    #[arg(
        short = 'P',
        long = "protocol",
        value_name = "PROTOCOL",
        default_value = "tcp"
    )]
    protocol: String,
    /// Range of ports ("from-to") or a single port number (required for tcp and udp).
    #[arg(
        short = 'p',
        long = "port-range",
        value_name = "RANGE",
        allow_hyphen_values = true
    )]
    port_range: Option<String>,
    /// ICMP type and code ("type:code"; default -1:-1, all).
    #[arg(
        short = 't',
        long = "icmp-type-code",
        value_name = "TYPE:CODE",
        allow_hyphen_values = true
    )]
    icmp_type_code: Option<String>,
    /// IP range to allow (repeatable; default 0.0.0.0/0 unless -o is given). `-S CIDR`, the
    /// euca2ools 1.x spelling of the Eucalyptus 1.5 guides, is read as `-s CIDR`.
    #[arg(short = 's', long = "cidr", value_name = "CIDR")]
    cidr: Vec<String>,
    /// Name or ID of a security group whose members to allow.
    #[arg(short = 'o', value_name = "GROUP")]
    source_group: Option<String>,
    /// ID of the account that owns the security group given with -o.
    #[arg(short = 'u', value_name = "ACCOUNT", requires = "source_group")]
    source_account: Option<String>,
}

impl Rule {
    /// The protocol as sent, and the port range (From, To) it needs, as euca2ools reads them.
    fn protocol_and_ports(&self) -> Result<(String, Option<(i32, i32)>), EucaError> {
        let usage = |m: String| Err(EucaError::Usage(m));
        let protocol = self.protocol.to_ascii_lowercase();
        match protocol.as_str() {
            "icmp" | "1" => {
                if self.port_range.is_some() {
                    return usage(format!(
                        "argument -p/--port-range: not compatible with protocol \"{protocol}\""
                    ));
                }
                let spec = self.icmp_type_code.as_deref().unwrap_or("-1:-1");
                let form = || {
                    EucaError::Usage(
                        "argument -t/--icmp-type-code: value must have format \"1:2\"".into(),
                    )
                };
                let (kind, code) = spec.split_once(':').ok_or_else(form)?;
                let (kind, code): (i32, i32) = (
                    kind.parse().map_err(|_| form())?,
                    code.parse().map_err(|_| form())?,
                );
                if kind < -1 || code < -1 {
                    return usage(
                        "argument -t/--icmp-type-code: ICMP type, code must be at least -1".into(),
                    );
                }
                Ok((protocol, Some((kind, code))))
            }
            "tcp" | "6" | "udp" | "17" => {
                if self.icmp_type_code.is_some() {
                    return usage(format!(
                        "argument -t/--icmp-type-code: not compatible with protocol \"{protocol}\""
                    ));
                }
                let Some(range) = self.port_range.as_deref() else {
                    return usage(format!(
                        "argument -p/--port-range is required for protocol \"{protocol}\""
                    ));
                };
                if range.contains(':') {
                    return usage(
                        "argument -p/--port-range: multi-port range must be separated by \"-\", \
                         not \":\""
                            .into(),
                    );
                }
                let (from, to) = parse_port_range(range).ok_or_else(|| {
                    EucaError::Usage(format!(
                        "argument -p/--port-range: {range:?} is neither a port number nor a \
                         range of port numbers"
                    ))
                })?;
                if from < -1 || to < -1 {
                    return usage(
                        "argument -p/--port-range: port number(s) must be at least -1".into(),
                    );
                }
                let from = if from == -1 { 1 } else { from };
                let to = if to == -1 { 65535 } else { to };
                Ok((protocol, Some((from, to))))
            }
            "all" | "-1" => Ok(("-1".to_owned(), None)),
            number if number.parse::<u8>().is_ok() => Ok((protocol.clone(), None)),
            _ => usage(format!("argument -P: no such protocol: {}", self.protocol)),
        }
    }

    /// The request's parameters, and the `PERMISSION` line that echoes them.
    fn params(&self) -> Result<(Params, Vec<String>), EucaError> {
        let (protocol, ports) = self.protocol_and_ports()?;
        let mut params = Params::new();
        let by = if is_group_id(&self.group) {
            "GroupId"
        } else {
            "GroupName"
        };
        params
            .set(by, &self.group)
            .set("IpPermissions.1.IpProtocol", &protocol);
        let (from, to) = match ports {
            Some((from, to)) => (from.to_string(), to.to_string()),
            None => (String::new(), String::new()),
        };
        if ports.is_some() {
            params
                .set("IpPermissions.1.FromPort", &from)
                .set("IpPermissions.1.ToPort", &to);
        }
        let mut echo: Vec<String> = ["PERMISSION", &self.group, "ALLOWS", &protocol, &from, &to]
            .map(str::to_owned)
            .to_vec();
        if let Some(account) = &self.source_account {
            params.set("IpPermissions.1.Groups.1.UserId", account);
            echo.extend(["USER".to_owned(), account.clone()]);
        }
        if let Some(source) = &self.source_group {
            let (param, label) = if is_group_id(source) {
                ("IpPermissions.1.Groups.1.GroupId", "ID")
            } else {
                ("IpPermissions.1.Groups.1.GroupName", "NAME")
            };
            params.set(param, source);
            echo.extend([label.to_owned(), source.clone()]);
        }
        // The whole Internet by default, but not beside a group grant (euca2ools sends both).
        let cidrs = match (&self.source_group, self.cidr.is_empty()) {
            (None, true) => vec!["0.0.0.0/0".to_owned()],
            _ => self.cidr.clone(),
        };
        for (n, cidr) in cidrs.iter().enumerate() {
            params.set(format!("IpPermissions.1.IpRanges.{}.CidrIp", n + 1), cidr);
            echo.extend(["FROM".to_owned(), "CIDR".to_owned(), cidr.clone()]);
        }
        Ok((params, echo))
    }

    fn apply(&self, action: &str, ec2: &Ec2Args) -> Result<(), EucaError> {
        let (params, echo) = self.params()?;
        ec2.client()?.call(action, &params)?;
        let mut table = ec2.table();
        table.row(&["GROUP", &self.group])?;
        let echo: Vec<&str> = echo.iter().map(String::as_str).collect();
        table.row(&echo)
    }
}

/// A port number, or a `from-to` range (`-1` stands for all).
fn parse_port_range(range: &str) -> Option<(i32, i32)> {
    if let Ok(port) = range.parse() {
        return Some((port, port));
    }
    // The first `-` after the first character: `-1-80` is -1 to 80.
    let split = range.char_indices().skip(1).find(|(_, c)| *c == '-')?.0;
    Some((
        range[..split].parse().ok()?,
        range[split + 1..].parse().ok()?,
    ))
}

/// Add a rule to a security group that allows traffic to pass.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Authorize {
    #[command(flatten)]
    rule: Rule,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for Authorize {
    fn run(self) -> Result<(), EucaError> {
        self.rule.apply("AuthorizeSecurityGroupIngress", &self.ec2)
    }

    fn spellings(args: Vec<OsString>) -> Vec<OsString> {
        one_x_cidr(args)
    }
}

/// euca2ools 1.x wrote a rule's CIDR with `-S`, which later versions gave the secret key: a
/// `-S` followed by an IPv4 CIDR (which no secret key is) is read as `-s`.
fn one_x_cidr(mut args: Vec<OsString>) -> Vec<OsString> {
    for i in 1..args.len() {
        let is_cidr = args[i]
            .to_str()
            .and_then(|v| v.split_once('/'))
            .is_some_and(|(ip, n)| {
                ip.parse::<std::net::Ipv4Addr>().is_ok() && n.parse::<u8>().is_ok_and(|n| n <= 32)
            });
        if is_cidr && args[i - 1] == "-S" {
            args[i - 1] = "-s".into();
        }
    }
    args
}

/// Remove a rule from a security group.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Revoke {
    #[command(flatten)]
    rule: Rule,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for Revoke {
    fn run(self) -> Result<(), EucaError> {
        self.rule.apply("RevokeSecurityGroupIngress", &self.ec2)
    }

    fn spellings(args: Vec<OsString>) -> Vec<OsString> {
        one_x_cidr(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(args: &[&str]) -> Result<(Vec<(String, String)>, String), EucaError> {
        let cmd = Authorize::try_parse_from(Authorize::spellings(
            std::iter::once("euca-authorize")
                .chain(args.iter().copied())
                .map(OsString::from)
                .collect(),
        ))
        .map_err(|e| EucaError::Usage(e.to_string()))?;
        let (params, echo) = cmd.rule.params()?;
        Ok((params.pairs().to_vec(), echo.join("\t")))
    }

    fn names(pairs: &[(String, String)]) -> Vec<String> {
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    #[test]
    fn tcp_port_and_default_cidr() {
        let (params, echo) = rule(&["default", "-p", "22"]).unwrap();
        assert_eq!(
            names(&params),
            [
                "GroupName=default",
                "IpPermissions.1.IpProtocol=tcp",
                "IpPermissions.1.FromPort=22",
                "IpPermissions.1.ToPort=22",
                "IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0",
            ]
        );
        assert_eq!(
            echo,
            "PERMISSION\tdefault\tALLOWS\ttcp\t22\t22\tFROM\tCIDR\t0.0.0.0/0"
        );
    }

    #[test]
    fn ranges_cidrs_and_group_ids() {
        let (params, _) = rule(&[
            "sg-0123abcd",
            "-P",
            "udp",
            "-p",
            "53-54",
            "-s",
            "10.0.0.0/8",
            "-s",
            "192.168.0.0/16",
        ])
        .unwrap();
        assert_eq!(
            names(&params),
            [
                "GroupId=sg-0123abcd",
                "IpPermissions.1.IpProtocol=udp",
                "IpPermissions.1.FromPort=53",
                "IpPermissions.1.ToPort=54",
                "IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8",
                "IpPermissions.1.IpRanges.2.CidrIp=192.168.0.0/16",
            ]
        );
        // euca2ools 1.x: -S for the CIDR, as the Eucalyptus 1.5 guides write it.
        let (params, _) = rule(&["default", "-P", "tcp", "-p", "22", "-S", "10.1.0.0/16"]).unwrap();
        // A -S that is no CIDR stays the secret key.
        let cmd = Authorize::try_parse_from(Authorize::spellings(
            ["euca-authorize", "default", "-S", "wJalr/K7MDENG"]
                .map(OsString::from)
                .to_vec(),
        ))
        .unwrap();
        assert_eq!(
            cmd.ec2.connection.secret_key.as_deref(),
            Some("wJalr/K7MDENG")
        );
        assert!(
            names(&params).contains(&"IpPermissions.1.IpRanges.1.CidrIp=10.1.0.0/16".to_owned())
        );
        let (params, _) = rule(&["web", "-p", "-1"]).unwrap();
        assert!(names(&params).contains(&"IpPermissions.1.FromPort=1".to_owned()));
        assert!(names(&params).contains(&"IpPermissions.1.ToPort=65535".to_owned()));
    }

    #[test]
    fn a_source_group_sends_no_default_cidr() {
        let (params, echo) =
            rule(&["web", "-p", "80-81", "-o", "lb", "-u", "123456789012"]).unwrap();
        assert_eq!(
            names(&params),
            [
                "GroupName=web",
                "IpPermissions.1.IpProtocol=tcp",
                "IpPermissions.1.FromPort=80",
                "IpPermissions.1.ToPort=81",
                "IpPermissions.1.Groups.1.UserId=123456789012",
                "IpPermissions.1.Groups.1.GroupName=lb",
            ]
        );
        assert_eq!(
            echo,
            "PERMISSION\tweb\tALLOWS\ttcp\t80\t81\tUSER\t123456789012\tNAME\tlb"
        );
        let (params, _) = rule(&["web", "-p", "80", "-o", "sg-11112222"]).unwrap();
        assert!(names(&params).contains(&"IpPermissions.1.Groups.1.GroupId=sg-11112222".to_owned()));
        assert!(
            rule(&["web", "-p", "80", "-u", "123"]).is_err(),
            "-u needs -o"
        );
    }

    #[test]
    fn icmp_and_all_protocols() {
        let (params, _) = rule(&["default", "-P", "icmp"]).unwrap();
        assert_eq!(
            names(&params)[1..4],
            [
                "IpPermissions.1.IpProtocol=icmp",
                "IpPermissions.1.FromPort=-1",
                "IpPermissions.1.ToPort=-1",
            ]
        );
        let (params, _) = rule(&["default", "-P", "icmp", "-t", "8:0"]).unwrap();
        assert!(names(&params).contains(&"IpPermissions.1.FromPort=8".to_owned()));
        let (params, echo) = rule(&["default", "-P", "all"]).unwrap();
        assert_eq!(
            names(&params),
            [
                "GroupName=default",
                "IpPermissions.1.IpProtocol=-1",
                "IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0"
            ]
        );
        assert_eq!(
            echo,
            "PERMISSION\tdefault\tALLOWS\t-1\t\t\tFROM\tCIDR\t0.0.0.0/0"
        );
    }

    #[test]
    fn bad_rules_are_usage_errors() {
        for args in [
            &["g"][..],
            &["g", "-p", "22:23"],
            &["g", "-p", "ssh"],
            &["g", "-p", "22", "-t", "8:0"],
            &["g", "-P", "icmp", "-p", "22"],
            &["g", "-P", "icmp", "-t", "8"],
            &["g", "-P", "icmp", "-t", "-2:0"],
            &["g", "-P", "bogus"],
        ] {
            assert!(matches!(rule(args), Err(EucaError::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_port_range("22"), Some((22, 22)));
        assert_eq!(parse_port_range("80-81"), Some((80, 81)));
        assert_eq!(parse_port_range("-1"), Some((-1, -1)));
        assert_eq!(parse_port_range("-1-80"), Some((-1, 80)));
        assert_eq!(parse_port_range("a-b"), None);
    }
}
