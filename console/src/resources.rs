//! A person's resources: their instances, the images they may launch, key pairs, security
//! groups and addresses; and the administrators' dashboard of what runs where.
//!
//! The lists are the answers of the EC2 Describe actions, run for the person as the API runs
//! them (`ec2_api::ec2::act`) and read as euca2ools reads them: the console sees exactly
//! what the person's euca2ools would, by the same rules. Terminating an instance is
//! TerminateInstances, run the same way.

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use http::StatusCode;
use identity::SignedIn;
use xml::Element;

use crate::page::{render, see_other};
use crate::{ConsoleError, Shared};

/// An EC2 action's answer as an element tree (the answer's elements under one root).
async fn described(
    console: &Shared,
    who: &SignedIn,
    action: &str,
    params: &[(&str, &str)],
) -> Result<Element, ConsoleError> {
    let body = ec2_api::ec2::act(&console.setup.cloud, &who.principal(), action, params).await?;
    Element::parse(format!("<answer>{body}</answer>").as_bytes())
        .map_err(|e| ConsoleError::Internal(format!("{action} answered unreadable XML: {e}")))
}

struct InstanceRow {
    id: String,
    state: String,
    image: String,
    kind: String,
    zone: String,
    public_ip: String,
    private_ip: String,
    key: String,
    launched: String,
}

struct ImageRow {
    id: String,
    location: String,
    kind: String,
    public: bool,
    mine: bool,
}

struct GroupRow {
    name: String,
    description: String,
    rules: usize,
}

#[derive(Template)]
#[template(path = "resources.html")]
struct ResourcesPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    instances: Vec<InstanceRow>,
    images: Vec<ImageRow>,
    keypairs: Vec<(String, String)>,
    groups: Vec<GroupRow>,
    addresses: Vec<(String, String)>,
}

/// `GET /resources`.
pub async fn show(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let Some(session) = crate::signed_in(&console, req.headers()) else {
        return Ok(see_other("/login"));
    };
    if session.who.must_change {
        return Ok(see_other("/first-run"));
    }
    let who = &session.who;
    let answer = described(&console, who, "DescribeInstances", &[]).await?;
    let mut instances = Vec::new();
    for reservation in answer.items("reservationSet") {
        for i in reservation.items("instancesSet") {
            instances.push(InstanceRow {
                id: i.field("instanceId").to_owned(),
                state: i.field("instanceState/name").to_owned(),
                image: i.field("imageId").to_owned(),
                kind: i.field("instanceType").to_owned(),
                zone: i.field("placement/availabilityZone").to_owned(),
                public_ip: i.field("ipAddress").to_owned(),
                private_ip: i.field("privateIpAddress").to_owned(),
                key: i.field("keyName").to_owned(),
                launched: i.field("launchTime").to_owned(),
            });
        }
    }
    instances.sort_by(|a, b| b.launched.cmp(&a.launched));
    let answer = described(&console, who, "DescribeImages", &[]).await?;
    let images = answer
        .items("imagesSet")
        .map(|i| ImageRow {
            id: i.field("imageId").to_owned(),
            location: i.field("imageLocation").to_owned(),
            kind: i.field("imageType").to_owned(),
            public: i.field("isPublic") == "true",
            mine: i.field("imageOwnerId") == who.account_id,
        })
        .collect();
    let answer = described(&console, who, "DescribeKeyPairs", &[]).await?;
    let keypairs = answer
        .items("keySet")
        .map(|k| {
            (
                k.field("keyName").to_owned(),
                k.field("keyFingerprint").to_owned(),
            )
        })
        .collect();
    let answer = described(&console, who, "DescribeSecurityGroups", &[]).await?;
    let groups = answer
        .items("securityGroupInfo")
        .map(|g| GroupRow {
            name: g.field("groupName").to_owned(),
            description: g.field("groupDescription").to_owned(),
            rules: g.items("ipPermissions").count(),
        })
        .collect();
    let answer = described(&console, who, "DescribeAddresses", &[]).await?;
    let addresses = answer
        .items("addressesSet")
        .map(|a| {
            (
                a.field("publicIp").to_owned(),
                a.field("instanceId").to_owned(),
            )
        })
        .collect();
    Ok(render(
        StatusCode::OK,
        &ResourcesPage {
            csrf: &console.sessions.csrf_token(&session),
            who,
            instances,
            images,
            keypairs,
            groups,
            addresses,
        },
    ))
}

/// `POST /resources/instances/ID/terminate`: TerminateInstances, as the API runs it.
pub async fn terminate(
    State(console): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, _) = match crate::posted_form(&console, req, crate::Who::Person).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    ec2_api::ec2::act(
        &console.setup.cloud,
        &session.who.principal(),
        "TerminateInstances",
        &[("InstanceId.1", &id)],
    )
    .await?;
    Ok(see_other("/resources#instances"))
}
