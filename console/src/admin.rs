//! The administrators' pages (cloud administrators only; anyone else signed in gets 403):
//! users, with the applications waiting for a decision.
//!
//! Approving or rejecting here does what the mail's links do (`signup::carry_out`),
//! disabling a user is Euare's `DisableUser` (`ec2_api::euare::set_user_enabled`) and
//! deleting an account its `DeleteAccount` (`ec2_api::euare::delete_account`).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use ec2_api::state::Batch;
use http::StatusCode;
use identity::{Role, SignedIn};

use crate::page::{render, see_other, MessagePage};
use crate::session::Session;
use crate::signup::{carry_out, Application, Purpose, Status};
use crate::{ConsoleError, Shared};

/// The session of a signed-in administrator; a person signed out goes to sign-in, anyone
/// else is refused.
fn administrator(
    console: &Shared,
    headers: &http::HeaderMap,
) -> Result<Result<Session, Response>, ConsoleError> {
    let Some(session) = crate::signed_in(console, headers) else {
        return Ok(Err(see_other("/login")));
    };
    if session.who.must_change {
        return Ok(Err(see_other("/first-run")));
    }
    if !session.is_admin() {
        return Err(ConsoleError::NotAdmin);
    }
    Ok(Ok(session))
}

struct UserRow {
    account: String,
    account_id: String,
    name: String,
    role: &'static str,
    enabled: bool,
    email: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    pending: Vec<Application>,
    users: Vec<UserRow>,
    add: AddForm,
}

/// The "Add an account" form as sent, with what is wrong with it.
#[derive(Default)]
struct AddForm {
    name: String,
    full_name: String,
    email: String,
    error: Option<String>,
    added: Option<String>,
}

/// `GET /admin/users`.
pub async fn users(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let session = match administrator(&console, req.headers())? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    users_page(&console, &session, StatusCode::OK, AddForm::default())
}

fn users_page(
    console: &Shared,
    session: &Session,
    status: StatusCode,
    add: AddForm,
) -> Result<Response, ConsoleError> {
    let identity = &console.setup.cloud.identity;
    let mut pending: Vec<Application> = console
        .setup
        .cloud
        .state
        .scan::<Application>("")?
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.status == Status::Pending)
        .collect();
    pending.sort_by_key(|a| a.created);
    let mut users = Vec::new();
    for (account_id, account) in identity.list_accounts()? {
        for user in identity.users_of(&account_id)? {
            let role = match user.role {
                Role::CloudAdmin => "Cloud administrator",
                Role::User if user.name == identity::ADMIN_USER => "Account administrator",
                Role::User => "User",
                Role::Component(_) => continue,
            };
            users.push(UserRow {
                email: identity
                    .email_of(&account_id, &user.name)?
                    .unwrap_or_default(),
                account: account.clone(),
                account_id: account_id.clone(),
                name: user.name,
                role,
                enabled: user.enabled,
            });
        }
    }
    users.sort_by(|a, b| (&a.account, &a.name).cmp(&(&b.account, &b.name)));
    Ok(render(
        status,
        &UsersPage {
            csrf: &console.sessions.csrf_token(session),
            who: &session.who,
            pending,
            users,
            add,
        },
    ))
}

/// `POST /admin/accounts`: fields `name`, `full_name`, `email`: a new account whose person
/// gets the activation mail and chooses a password (`signup::add_by_admin`).
pub async fn add_account(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, form) = match crate::posted_form(&console, req, crate::Who::Admin).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let mut add = AddForm {
        name: form.get("name").trim().to_owned(),
        full_name: form.get("full_name").trim().to_owned(),
        email: form.get("email").trim().to_owned(),
        ..AddForm::default()
    };
    let admin = format!("{}@{}", session.who.user_name, session.who.account_name);
    match crate::signup::add_by_admin(&console, &admin, &add.name, &add.full_name, &add.email)? {
        Ok(()) => {
            let added = AddForm {
                added: Some(format!(
                    "{} was sent the activation link for account {}.",
                    add.email, add.name
                )),
                ..AddForm::default()
            };
            users_page(&console, &session, StatusCode::OK, added)
        }
        Err(why) => {
            add.error = Some(why);
            users_page(&console, &session, StatusCode::BAD_REQUEST, add)
        }
    }
}

/// `POST /admin/users`: fields `account`, `user`, `action` (`disable`, `enable` or
/// `delete`); or `account`, `action=delete-account` (and `confirm=yes` once confirmed).
pub async fn change_user(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, form) = match crate::posted_form(&console, req, crate::Who::Admin).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let enabled = match form.get("action") {
        "enable" => true,
        "disable" => false,
        "delete-account" => return delete_account(&console, &session, &form).await,
        "delete" => {
            ec2_api::euare::delete_user(
                &console.setup.cloud.identity,
                &session.who.principal(),
                Some(form.get("account")),
                form.get("user"),
            )?;
            return Ok(see_other("/admin/users"));
        }
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "{other:?} is not something a user can be."
            )))
        }
    };
    ec2_api::euare::set_user_enabled(
        &console.setup.cloud.identity,
        &session.who.principal(),
        Some(form.get("account")),
        form.get("user"),
        enabled,
    )?;
    Ok(see_other("/admin/users"))
}

#[derive(Template)]
#[template(path = "admin_delete_account.html")]
struct DeleteAccountPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    account: &'a str,
    account_id: String,
    users: Vec<String>,
    error: Option<String>,
}

/// Deleting an account from the Users page: first a page saying what goes (no JavaScript
/// confirm), then, with `confirm=yes`, Euare's `DeleteAccount` (recursive). What the
/// account still owns is said on that page.
async fn delete_account(
    console: &Shared,
    session: &Session,
    form: &crate::page::Form,
) -> Result<Response, ConsoleError> {
    let account = form.get("account");
    let cloud = &console.setup.cloud;
    let Some(account_id) = cloud.identity.account_id(account)? else {
        return Err(ConsoleError::NotFound);
    };
    let mut page = DeleteAccountPage {
        csrf: &console.sessions.csrf_token(session),
        who: &session.who,
        account,
        users: cloud.identity.list_users(&account_id)?,
        account_id,
        error: None,
    };
    if form.get("confirm") != "yes" {
        return Ok(render(StatusCode::OK, &page));
    }
    let principal = session.who.principal();
    match ec2_api::euare::delete_account(cloud, &principal, account, true).await {
        Ok(()) => Ok(see_other("/admin/users")),
        Err(e) => match ConsoleError::from(e) {
            ConsoleError::Refused(status, why) => {
                page.error = Some(why);
                Ok(render(status, &page))
            }
            other => Err(other),
        },
    }
}

/// `POST /admin/applications/ID`: field `action`, `approve` or `reject`.
pub async fn decide(
    State(console): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (_, form) = match crate::posted_form(&console, req, crate::Who::Admin).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let purpose = match form.get("action") {
        "approve" => Purpose::Approve,
        "reject" => Purpose::Reject,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "{other:?} is not a decision."
            )))
        }
    };
    let state = &console.setup.cloud.state;
    let guard = state.exclusive();
    let Some(mut application) = state
        .get::<Application>(&id)?
        .filter(|a| a.status == Status::Pending)
    else {
        return Err(ConsoleError::Refused(
            StatusCode::GONE,
            "This application was decided already.".into(),
        ));
    };
    let mut batch = Batch::new();
    let (title, message) = match carry_out(&console, &mut batch, &mut application, purpose)? {
        Ok(done) => done,
        Err(page) => return Ok(page),
    };
    batch.put(&application.id, &application);
    state.commit(batch)?;
    drop(guard);
    console.outbox.wake();
    Ok(render(
        StatusCode::OK,
        &MessagePage {
            title,
            message: &message,
            signed_in: true,
        },
    ))
}

struct ImageRow {
    id: String,
    name: String,
    owner: String,
    kind: &'static str,
    architecture: String,
    public: bool,
    created: String,
}

#[derive(Template)]
#[template(path = "admin_images.html")]
struct ImagesPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    images: Vec<ImageRow>,
}

/// `GET /admin/images`: every registered image, DescribeImages' rule for an administrator.
pub async fn images(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let session = match administrator(&console, req.headers())? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let cloud = &console.setup.cloud;
    let accounts: std::collections::HashMap<String, String> =
        cloud.identity.list_accounts()?.into_iter().collect();
    let mut images: Vec<ImageRow> = ec2_api::visible_images(cloud, &session.who.principal())?
        .into_iter()
        .map(|i| ImageRow {
            owner: accounts.get(&i.owner).cloned().unwrap_or(i.owner),
            kind: match i.kind {
                ec2_api::ImageKind::Machine => "machine",
                ec2_api::ImageKind::Kernel => "kernel",
                ec2_api::ImageKind::Ramdisk => "ramdisk",
            },
            id: i.id,
            name: i.name,
            architecture: i.architecture,
            public: i.public,
            created: i.created,
        })
        .collect();
    images.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
    Ok(render(
        StatusCode::OK,
        &ImagesPage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            images,
        },
    ))
}

/// `POST /admin/images/ID/deregister`: EC2's DeregisterImage, as the API runs it.
pub async fn deregister(
    State(console): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, _) = match crate::posted_form(&console, req, crate::Who::Admin).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    ec2_api::ec2::act(
        &console.setup.cloud,
        &session.who.principal(),
        "DeregisterImage",
        &[("ImageId", &id)],
    )
    .await?;
    Ok(see_other("/admin/images"))
}

struct NodeRow {
    zone: String,
    host: String,
    state: String,
    cores: String,
    memory: String,
    disk: String,
    free_small: String,
}

struct VmTypeRow {
    name: String,
    cpus: u32,
    memory_mib: u32,
    disk_gib: u32,
    free: u64,
}

#[derive(Template)]
#[template(path = "admin_config.html")]
struct ConfigPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    walrus_url: &'a str,
    ec2_url: &'a str,
    clusters: Vec<(String, String)>,
    nodes: Vec<NodeRow>,
    vm_types: Vec<VmTypeRow>,
    properties: Vec<ec2_api::properties::Property>,
}

/// `GET /admin/config`: the clusters and their nodes (state, what is used, free slots), the
/// VM types with the room the cloud has for each, the URLs, and every cloud property.
pub async fn config(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let session = match administrator(&console, req.headers())? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let cloud = &console.setup.cloud;
    let principal = session.who.principal();
    let vm_types = ec2_api::properties::vm_types(cloud)?;
    let spec = |v: &ec2_api::properties::VmType| rpc::VmSpec {
        name: v.name.clone(),
        cpus: v.cpus,
        memory_mib: v.memory_mib.into(),
        disk_gib: v.disk_gib.into(),
    };
    let small = vm_types.iter().find(|v| v.name == "m1.small").map(&spec);
    let mut clusters = Vec::new();
    let mut nodes = Vec::new();
    let mut reports = Vec::new();
    for (zone, url, _) in cloud.clusters.all() {
        clusters.push((zone.clone(), url));
        match cloud.clusters.nodes(&zone).await {
            Ok(found) => {
                for node in found {
                    let row = match (&node.error, &node.resources) {
                        (None, Some(r)) => NodeRow {
                            zone: zone.clone(),
                            host: node.host.clone(),
                            state: "up".into(),
                            cores: format!("{} of {}", r.used_cores, r.cores),
                            memory: format!("{} of {} MiB", r.used_memory_mib, r.memory_mib),
                            disk: format!("{} of {} GiB", r.used_disk_gib, r.disk_gib),
                            free_small: small
                                .as_ref()
                                .map_or_else(String::new, |s| r.free_slots(s).to_string()),
                        },
                        (error, _) => NodeRow {
                            zone: zone.clone(),
                            host: node.host.clone(),
                            state: error.clone().unwrap_or_else(|| "not reported yet".into()),
                            cores: String::new(),
                            memory: String::new(),
                            disk: String::new(),
                            free_small: "0".into(),
                        },
                    };
                    nodes.push(row);
                    if node.error.is_none() {
                        reports.extend(node.resources);
                    }
                }
            }
            Err(e) => nodes.push(NodeRow {
                zone: zone.clone(),
                host: String::new(),
                state: e.to_string(),
                cores: String::new(),
                memory: String::new(),
                disk: String::new(),
                free_small: "0".into(),
            }),
        }
    }
    let vm_types = vm_types
        .iter()
        .map(|v| VmTypeRow {
            free: reports.iter().map(|r| r.free_slots(&spec(v))).sum(),
            name: v.name.clone(),
            cpus: v.cpus,
            memory_mib: v.memory_mib,
            disk_gib: v.disk_gib,
        })
        .collect();
    let urls = crate::service_urls(&console)?;
    Ok(render(
        StatusCode::OK,
        &ConfigPage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            walrus_url: &urls.s3_url,
            ec2_url: urls.ec2_url.as_deref().unwrap_or_default(),
            clusters,
            nodes,
            vm_types,
            properties: ec2_api::properties::list(cloud, &principal, &[])?,
        },
    ))
}

/// `POST /admin/config`: fields `name` and `value`, or `reset`: ModifyPropertyValue's
/// operation.
pub async fn set_property(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, form) = match crate::posted_form(&console, req, crate::Who::Admin).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let value = (form.get("reset").is_empty()).then(|| form.get("value"));
    ec2_api::properties::set(
        &console.setup.cloud,
        &session.who.principal(),
        form.get("name"),
        value,
    )?;
    Ok(see_other("/admin/config#properties"))
}

struct RunningRow {
    id: String,
    owner: String,
    state: &'static str,
    kind: String,
    image: String,
    address: String,
    launched: String,
}

struct NodeGroup {
    zone: String,
    node: String,
    instances: Vec<RunningRow>,
}

#[derive(Template)]
#[template(path = "admin_dashboard.html")]
struct DashboardPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    counts: Vec<(&'static str, usize)>,
    accounts: usize,
    pending_applications: usize,
    groups: Vec<NodeGroup>,
}

/// `GET /admin`: what runs where (every account's instances not terminated, by zone and
/// node: `DescribeInstances verbose`'s operation), with counts by state.
pub async fn dashboard(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let session = match administrator(&console, req.headers())? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let cloud = &console.setup.cloud;
    let all = ec2_api::instances::everyones(cloud, &session.who.principal())?;
    let accounts: std::collections::HashMap<String, String> =
        cloud.identity.list_accounts()?.into_iter().collect();
    let states = ["pending", "running", "shutting-down", "terminated"];
    let counts = states
        .iter()
        .map(|s| (*s, all.iter().filter(|i| i.state.name() == *s).count()))
        .collect();
    let mut by_node: std::collections::BTreeMap<(String, String), Vec<RunningRow>> =
        std::collections::BTreeMap::new();
    for i in all
        .into_iter()
        .filter(|i| i.state != rpc::InstanceState::Terminated)
    {
        let node = i.node.clone().unwrap_or_else(|| "(not placed yet)".into());
        by_node
            .entry((i.zone.clone(), node))
            .or_default()
            .push(RunningRow {
                owner: accounts.get(&i.owner).cloned().unwrap_or(i.owner),
                state: i.state.name(),
                address: i
                    .nic
                    .as_ref()
                    .and_then(|n| n.address())
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                id: i.id,
                kind: i.instance_type,
                image: i.image_id,
                launched: i.launch_time,
            });
    }
    let pending_applications = cloud
        .state
        .scan::<Application>("")?
        .iter()
        .filter(|(_, a)| a.status == Status::Pending)
        .count();
    Ok(render(
        StatusCode::OK,
        &DashboardPage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            counts,
            accounts: accounts.len(),
            pending_applications,
            groups: by_node
                .into_iter()
                .map(|((zone, node), instances)| NodeGroup {
                    zone,
                    node,
                    instances,
                })
                .collect(),
        },
    ))
}
