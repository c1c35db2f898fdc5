//! Euare, Eucalyptus' account service (IAM's API at `/services/Euare`): accounts, users,
//! access keys and signing certificates, plus Koala's `GetCredentials`, the credentials zip
//! that `euca_conf --get-credentials` downloads.
//!
//! Who may do what, as in Eucalyptus: an account's `admin` user manages its own account (and
//! downloads its users' credentials); a cloud administrator (user `admin` of account
//! `eucalyptus`, and the users it made administrators with `GrantCloudAdmin`) also manages
//! any other account by naming it in `DelegateAccount`, and registers the cloud's components
//! (`RegisterComponent`). Other users may do nothing here yet (IAM policies come later).
//!
//! The rules are [`managed_account`] and [`credentials`], which the web console calls too.
//!
//! Actions may generate RSA keys or write to RocksDB with fsync: [`dispatch`] blocks and is
//! run off the async reactor.

use std::time::SystemTime;

use base64::Engine;
use identity::{
    AccessKeyStatus, ComponentKind, Credentials, Identity, Principal, ServiceUrls, ADMIN_ACCOUNT,
    ADMIN_USER,
};

use crate::query::{document, QueryRequest, Xml};
use crate::QueryError;

/// IAM's XML namespace, which Euare answers in.
pub const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// Every Euare action this service knows but [`DELETE_ACCOUNT`] (which waits for Walrus and
/// is served before). An explicit list, so that the router tells a misspelt action from an
/// unknown one in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    CreateAccount,
    CreateUser,
    ListUsers,
    CreateAccessKey,
    ListAccessKeys,
    UpdateAccessKey,
    DeleteAccessKey,
    CreateSigningCertificate,
    ListSigningCertificates,
    GetCredentials,
    RegisterComponent,
    GrantCloudAdmin,
    RevokeCloudAdmin,
    EnableUser,
    DisableUser,
    DeleteUser,
}

impl Action {
    fn parse(name: &str) -> Option<Action> {
        Some(match name {
            "CreateAccount" => Action::CreateAccount,
            "CreateUser" => Action::CreateUser,
            "ListUsers" => Action::ListUsers,
            "CreateAccessKey" => Action::CreateAccessKey,
            "ListAccessKeys" => Action::ListAccessKeys,
            "UpdateAccessKey" => Action::UpdateAccessKey,
            "DeleteAccessKey" => Action::DeleteAccessKey,
            "CreateSigningCertificate" => Action::CreateSigningCertificate,
            "ListSigningCertificates" => Action::ListSigningCertificates,
            "GetCredentials" => Action::GetCredentials,
            "RegisterComponent" => Action::RegisterComponent,
            "GrantCloudAdmin" => Action::GrantCloudAdmin,
            "RevokeCloudAdmin" => Action::RevokeCloudAdmin,
            "EnableUser" => Action::EnableUser,
            "DisableUser" => Action::DisableUser,
            "DeleteUser" => Action::DeleteUser,
            _ => return None,
        })
    }
}

/// What one Euare request works with.
pub struct Context<'a> {
    /// The account store.
    pub identity: &'a Identity,
    /// The endpoints written into credentials the request hands out.
    pub urls: &'a ServiceUrls,
    /// Who signed the request.
    pub caller: &'a Principal,
    /// The request's parameters.
    pub request: &'a QueryRequest,
    /// The id echoed in the response.
    pub request_id: &'a str,
}

/// Runs one Euare action for an authenticated caller and returns the response document.
/// Blocking: call it from a blocking thread.
pub fn dispatch(ctx: &Context, action_name: &str) -> Result<String, QueryError> {
    let action = Action::parse(action_name)
        .ok_or_else(|| QueryError::InvalidAction(action_name.to_owned()))?;
    let denied = || QueryError::AccessDenied(action_name.to_owned());
    let cloud_admin_only = matches!(
        action,
        Action::CreateAccount
            | Action::RegisterComponent
            | Action::GrantCloudAdmin
            | Action::RevokeCloudAdmin
    );
    if cloud_admin_only && !ctx.caller.is_cloud_admin() {
        return Err(denied());
    }
    let result = match action {
        Action::CreateAccount => create_account(ctx)?,
        Action::GetCredentials => get_credentials(ctx)?,
        Action::RegisterComponent => register_component(ctx)?,
        Action::GrantCloudAdmin | Action::RevokeCloudAdmin => {
            let user = ctx.request.required("UserName")?;
            ctx.identity
                .set_cloud_admin(user, action == Action::GrantCloudAdmin)?;
            String::new()
        }
        _ => {
            let account = target_account(ctx).ok_or_else(denied)??;
            let user = ctx.request.get("UserName").filter(|u| !u.is_empty());
            match action {
                Action::CreateUser => {
                    create_user(ctx, &account, ctx.request.required("UserName")?)?
                }
                Action::ListUsers => list_users(ctx, &account)?,
                Action::CreateAccessKey => {
                    create_access_key(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::ListAccessKeys => {
                    list_access_keys(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::UpdateAccessKey => {
                    update_access_key(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::DeleteAccessKey => {
                    delete_access_key(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::CreateSigningCertificate => {
                    create_signing_certificate(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::ListSigningCertificates => {
                    list_signing_certificates(ctx, &account, user.unwrap_or(ADMIN_USER))?
                }
                Action::DeleteUser => {
                    let user = ctx.request.required("UserName")?;
                    let delegate = ctx.request.get("DelegateAccount").filter(|a| !a.is_empty());
                    delete_user(ctx.identity, ctx.caller, delegate, user)?;
                    String::new()
                }
                Action::EnableUser | Action::DisableUser => {
                    let user = ctx.request.required("UserName")?;
                    let delegate = ctx.request.get("DelegateAccount").filter(|a| !a.is_empty());
                    let enabled = action == Action::EnableUser;
                    set_user_enabled(ctx.identity, ctx.caller, delegate, user, enabled)?;
                    String::new()
                }
                Action::CreateAccount
                | Action::GetCredentials
                | Action::RegisterComponent
                | Action::GrantCloudAdmin
                | Action::RevokeCloudAdmin => return Err(denied()),
            }
        }
    };
    Ok(envelope(action_name, &result, ctx.request_id))
}

/// The id of the account the action works on, or `None` when the caller may not manage it:
/// see [`managed_account`].
fn target_account(ctx: &Context) -> Option<Result<String, QueryError>> {
    let delegate = ctx.request.get("DelegateAccount").filter(|a| !a.is_empty());
    match managed_account(ctx.identity, ctx.caller, delegate) {
        Err(QueryError::AccessDenied(_)) => None,
        found => Some(found),
    }
}

/// The id of the account `caller` manages: its own for its `admin` user (and for a cloud
/// administrator), or the account named `delegate` for a cloud administrator.
/// `AccessDenied` for anyone else.
pub fn managed_account(
    identity: &Identity,
    caller: &Principal,
    delegate: Option<&str>,
) -> Result<String, QueryError> {
    match delegate {
        Some(_) if !caller.is_cloud_admin() => Err(QueryError::AccessDenied(
            "managing another account".to_owned(),
        )),
        Some(name) => identity
            .account_id(name)?
            .ok_or_else(|| QueryError::NoSuchEntity(format!("The account {name} does not exist."))),
        None if caller.user_name == ADMIN_USER || caller.is_cloud_admin() => {
            Ok(caller.account_id.clone())
        }
        None => Err(QueryError::AccessDenied("managing this account".to_owned())),
    }
}

/// Koala's `DisableUser` / `EnableUser UserName=U [DelegateAccount=A]`: a disabled user
/// neither signs in to the console nor signs requests (its keys are kept, refused). The
/// caller must manage the account, its own or `delegate` ([`managed_account`]); nobody
/// disables themselves.
pub fn set_user_enabled(
    identity: &Identity,
    caller: &Principal,
    delegate: Option<&str>,
    user: &str,
    enabled: bool,
) -> Result<(), QueryError> {
    let account_id = managed_account(identity, caller, delegate)?;
    let account_id = account_id.as_str();
    if !enabled && caller.account_id == account_id && caller.user_name == user {
        return Err(QueryError::Validation(
            "You cannot disable yourself.".to_owned(),
        ));
    }
    Ok(identity.set_user_enabled(account_id, user, enabled)?)
}

/// `DeleteUser UserName=U [DelegateAccount=A]`: the user goes with its keys, certificates
/// and console password at once (Eucalyptus' recursive delete; IAM would first want them
/// removed one by one). The caller must manage the account; nobody deletes themselves.
pub fn delete_user(
    identity: &Identity,
    caller: &Principal,
    delegate: Option<&str>,
    user: &str,
) -> Result<(), QueryError> {
    let account_id = managed_account(identity, caller, delegate)?;
    if caller.account_id == account_id && caller.user_name == user {
        return Err(QueryError::Validation(
            "You cannot delete yourself.".to_owned(),
        ));
    }
    Ok(identity.delete_user(&account_id, user)?)
}

/// The Euare action served by [`serve_delete_account`] rather than [`dispatch`]: it waits for
/// Walrus, so it runs on the runtime.
pub const DELETE_ACCOUNT: &str = "DeleteAccount";

/// Serves `DeleteAccount AccountName=A [Recursive=true|false]` ([`delete_account`]) and
/// returns the response document.
pub async fn serve_delete_account(
    cloud: &crate::Cloud,
    caller: &Principal,
    request: &QueryRequest,
    request_id: &str,
) -> Result<String, QueryError> {
    let name = request.required("AccountName")?;
    let recursive = match request.get("Recursive").unwrap_or("false") {
        r if r.eq_ignore_ascii_case("true") => true,
        r if r.eq_ignore_ascii_case("false") => false,
        other => {
            return Err(QueryError::Validation(format!(
                "Recursive is true or false, not '{other}'."
            )))
        }
    };
    delete_account(cloud, caller, name, recursive).await?;
    Ok(envelope(DELETE_ACCOUNT, "", request_id))
}

/// Eucalyptus' `DeleteAccount` (`euare-accountdel [-r]`), for cloud administrators: account
/// `name` goes with its users, keys, certificates, console passwords, key pairs and
/// security groups; never the cloud's own `eucalyptus`. What holds data or costs the cloud
/// must be let go by its owner first, so that nothing is lost by surprise: registered
/// images, instances not terminated, elastic IPs and buckets (asked of Walrus) make it a
/// `DeleteConflict` that lists them. Unless `recursive`, users other than `admin` make it
/// one too. The console's "Delete account" is this.
pub async fn delete_account(
    cloud: &crate::Cloud,
    caller: &Principal,
    name: &str,
    recursive: bool,
) -> Result<(), QueryError> {
    if !caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied(DELETE_ACCOUNT.to_owned()));
    }
    if name == ADMIN_ACCOUNT {
        return Err(QueryError::Validation(format!(
            "The {ADMIN_ACCOUNT} account is the cloud's own: it cannot be deleted."
        )));
    }
    let account = cloud
        .identity
        .account_id(name)?
        .ok_or_else(|| QueryError::NoSuchEntity(format!("The account {name} does not exist.")))?;
    let buckets = cloud
        .bundles
        .buckets_of(&account)
        .await
        .map_err(|e| crate::ec2::walrus_unavailable("say which buckets the account owns", e))?;
    let (cloud, name, by) = (cloud.clone(), name.to_owned(), caller.user_name.clone());
    tokio::task::spawn_blocking(move || {
        let _guard = cloud.state.exclusive();
        let mut held = Vec::new();
        let mut list = |what: &str, items: Vec<String>| {
            if !items.is_empty() {
                held.push(format!("{what} {}", items.join(", ")));
            }
        };
        list("images", crate::images::registered_by(&cloud, &account)?);
        list("instances", crate::instances::live_of(&cloud, &account)?);
        list("addresses", crate::addresses::held_by(&cloud, &account)?);
        list("buckets", buckets);
        let users: Vec<String> = cloud
            .identity
            .list_users(&account)?
            .into_iter()
            .filter(|u| u != ADMIN_USER)
            .collect();
        if !recursive {
            list("users", users);
        }
        if !held.is_empty() {
            return Err(QueryError::DeleteConflict(format!(
                "The account {name} still has {}. Its owner must let them go first{}.",
                held.join("; "),
                if recursive {
                    ""
                } else {
                    " (users go with Recursive=true)"
                }
            )));
        }
        let mut batch = crate::state::Batch::new();
        crate::groups::forget_account(&cloud, &mut batch, &account)?;
        crate::keypairs::forget_account(&cloud, &mut batch, &account)?;
        cloud.identity.delete_account(&account)?;
        cloud.state.commit(batch)?;
        tracing::info!(account, name, by, "deleted an account");
        Ok(())
    })
    .await
    .map_err(|e| QueryError::failed("DeleteAccount failed", e))?
}

/// The credentials zip of user `user` (default `admin`) of account `account` (default: the
/// caller's own, `eucalyptus` for a cloud administrator): eucarc, euca2ools.ini, a new X.509
/// certificate and key, the cloud's certificate, and an active access key. A cloud
/// administrator gets anyone's; an account's `admin` user those of its own account's users.
/// Slow (RSA key generation): off the reactor.
pub fn credentials(
    identity: &Identity,
    urls: &ServiceUrls,
    caller: &Principal,
    account: Option<&str>,
    user: Option<&str>,
) -> Result<Vec<u8>, QueryError> {
    let default_account = if caller.is_cloud_admin() {
        ADMIN_ACCOUNT
    } else {
        caller.account_name.as_str()
    };
    let account_name = account.unwrap_or(default_account);
    let user = user.unwrap_or(ADMIN_USER);
    let delegate = (account_name != caller.account_name).then_some(account_name);
    let account = match managed_account(identity, caller, delegate) {
        Err(QueryError::AccessDenied(_)) => {
            return Err(QueryError::AccessDenied("GetCredentials".to_owned()))
        }
        found => found?,
    };
    Ok(identity.credential_bundle(&account, user, urls)?.to_zip())
}

/// Wraps an action's result (as [`Xml`] wrote it; none when empty) in IAM's response
/// document. `action` is one [`Action::parse`] knows, so it is a name fit for an element.
fn envelope(action: &str, result: &str, request_id: &str) -> String {
    let root = format!("{action}Response");
    let mut w = document();
    w.open_with(&root, &[("xmlns", NAMESPACE)]);
    if !result.is_empty() {
        let wrapper = format!("{action}Result");
        w.open(&wrapper).raw(result).close(&wrapper);
    }
    w.open("ResponseMetadata")
        .elem("RequestId", request_id)
        .close("ResponseMetadata")
        .close(&root);
    w.finish()
}

/// ISO 8601 in UTC, as IAM dates are.
fn iso8601(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A user's fields, as IAM writes them in `<User>` and in `ListUsers`' members.
fn user_xml(x: &mut Xml, account_id: &str, user: &str) {
    x.elem("Path", "/")
        .elem("UserName", user)
        .elem("Arn", &format!("arn:aws:iam::{account_id}:user/{user}"));
}

/// A new access key with its secret, which the caller sees this once.
fn access_key_xml(x: &mut Xml, creds: &Credentials) {
    x.nest("AccessKey", |x| {
        x.elem("UserName", &creds.user_name)
            .elem("AccessKeyId", &creds.access_key_id)
            .elem("Status", "Active")
            .elem("SecretAccessKey", &creds.secret_access_key);
    });
}

/// `CreateAccount AccountName=NAME`: like Eucalyptus it makes the account with its `admin`
/// user; Koala also returns that user's first access key (an extension: Eucalyptus needs a
/// second call, `CreateAccessKey DelegateAccount=NAME`).
fn create_account(ctx: &Context) -> Result<String, QueryError> {
    let name = ctx.request.required("AccountName")?;
    let creds = ctx.identity.create_account(name)?;
    let mut x = Xml::new();
    x.nest("Account", |x| {
        x.elem("AccountName", &creds.account_name)
            .elem("AccountId", &creds.account_id);
    });
    access_key_xml(&mut x, &creds);
    Ok(x.finish())
}

fn create_user(ctx: &Context, account: &str, user: &str) -> Result<String, QueryError> {
    ctx.identity.create_user(account, user)?;
    let mut x = Xml::new();
    x.nest("User", |x| user_xml(x, account, user));
    Ok(x.finish())
}

fn list_users(ctx: &Context, account: &str) -> Result<String, QueryError> {
    let users = ctx.identity.list_users(account)?;
    let mut x = Xml::new();
    x.nest("Users", |x| {
        for user in &users {
            x.nest("member", |x| user_xml(x, account, user));
        }
    })
    .elem("IsTruncated", "false");
    Ok(x.finish())
}

fn create_access_key(ctx: &Context, account: &str, user: &str) -> Result<String, QueryError> {
    let creds = ctx.identity.create_access_key(account, user)?;
    let mut x = Xml::new();
    access_key_xml(&mut x, &creds);
    Ok(x.finish())
}

fn status_name(status: AccessKeyStatus) -> &'static str {
    match status {
        AccessKeyStatus::Active => "Active",
        AccessKeyStatus::Inactive => "Inactive",
    }
}

fn list_access_keys(ctx: &Context, account: &str, user: &str) -> Result<String, QueryError> {
    let keys = ctx.identity.list_access_keys(account, user)?;
    let mut x = Xml::new();
    x.elem("UserName", user)
        .nest("AccessKeyMetadata", |x| {
            for key in &keys {
                x.nest("member", |x| {
                    x.elem("UserName", &key.user_name)
                        .elem("AccessKeyId", &key.access_key_id)
                        .elem("Status", status_name(key.status))
                        .elem("CreateDate", &iso8601(key.created));
                });
            }
        })
        .elem("IsTruncated", "false");
    Ok(x.finish())
}

fn update_access_key(ctx: &Context, account: &str, user: &str) -> Result<String, QueryError> {
    let key = ctx.request.required("AccessKeyId")?;
    let status = match ctx.request.required("Status")? {
        "Active" => AccessKeyStatus::Active,
        "Inactive" => AccessKeyStatus::Inactive,
        other => {
            return Err(QueryError::Validation(format!(
                "Value '{other}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
            )))
        }
    };
    ctx.identity
        .set_access_key_status(account, user, key, status)?;
    Ok(String::new())
}

fn delete_access_key(ctx: &Context, account: &str, user: &str) -> Result<String, QueryError> {
    let key = ctx.request.required("AccessKeyId")?;
    ctx.identity.delete_access_key(account, user, key)?;
    Ok(String::new())
}

/// Eucalyptus' `CreateSigningCertificate`: the cloud makes the key pair and returns the
/// private key with the certificate, once (IAM's `UploadSigningCertificate` is not offered).
fn create_signing_certificate(
    ctx: &Context,
    account: &str,
    user: &str,
) -> Result<String, QueryError> {
    let (cert, key_pem) = ctx.identity.create_signing_certificate(account, user)?;
    let mut x = Xml::new();
    x.nest("Certificate", |x| {
        x.elem("UserName", &cert.user_name)
            .elem("CertificateId", &cert.certificate_id)
            .elem("CertificateBody", &cert.cert_pem)
            .elem("PrivateKey", &key_pem)
            .elem("Status", "Active")
            .elem("UploadDate", &iso8601(cert.created));
    });
    Ok(x.finish())
}

fn list_signing_certificates(
    ctx: &Context,
    account: &str,
    user: &str,
) -> Result<String, QueryError> {
    let certs = ctx.identity.list_signing_certificates(account, user)?;
    let mut x = Xml::new();
    x.elem("UserName", user)
        .nest("Certificates", |x| {
            for cert in &certs {
                x.nest("member", |x| {
                    x.elem("UserName", &cert.user_name)
                        .elem("CertificateId", &cert.certificate_id)
                        .elem("CertificateBody", &cert.cert_pem)
                        .elem("Status", status_name(cert.status))
                        .elem("UploadDate", &iso8601(cert.created));
                });
            }
        })
        .elem("IsTruncated", "false");
    Ok(x.finish())
}

/// Koala's `GetCredentials [AccountName=NAME] [UserName=NAME]` (cloud admin only): a fresh
/// credentials zip for a user (default: `admin` of `eucalyptus`), base64 in `<Credentials>`.
/// Eucalyptus' `euca_conf --get-credentials` read the database on the CLC host; Koala's
/// `euca_conf` calls this instead, so it works from any host with the admin's keys.
/// `RegisterComponent Kind=cluster|node|walrus|cloud ComponentName=NAME PublicKey=PEM
/// [HostName.N=...]` (Koala's): the principal of one of the cloud's components (`cc-ZONE`,
/// `nc-HOST`, `walrus`, `clc`) with a new access key, and a TLS certificate for the public
/// key it sent (its private key never leaves it) with the cloud CA's, which a component
/// started apart keeps in its data dir. Registering it again (its files were lost) replaces
/// its keys.
fn register_component(ctx: &Context) -> Result<String, QueryError> {
    let kind_name = ctx.request.required("Kind")?;
    let kind = ComponentKind::parse(kind_name).ok_or_else(|| {
        QueryError::Validation(format!(
            "Kind '{kind_name}' is not one of cloud, cluster, node, walrus."
        ))
    })?;
    let name = ctx.request.required("ComponentName")?;
    let expected = kind.principal_name("");
    let fits = match kind {
        ComponentKind::ClusterController | ComponentKind::NodeController => {
            name.len() > expected.len() && name.starts_with(&expected)
        }
        ComponentKind::CloudController | ComponentKind::Walrus => name == expected,
    };
    if !fits {
        return Err(QueryError::Validation(format!(
            "A {kind_name} component is named {expected}{}, not '{name}'.",
            if expected.ends_with('-') { "NAME" } else { "" }
        )));
    }
    // The component's TLS certificate, for the public key it made and keeps.
    let public_key = ctx.request.required("PublicKey")?;
    let hosts: Vec<String> = ctx
        .request
        .list("HostName")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let ca = ctx
        .identity
        .cloud_ca()
        .ok_or_else(|| QueryError::internal("this cloud has no certificate authority"))?;
    let cert = ca
        .issue_tls_certificate(public_key, name, &[kind], &hosts)
        .map_err(|e| QueryError::Validation(format!("Cannot certify the component: {e}")))?;
    let creds = ctx.identity.register_component(kind, name)?;
    let mut x = Xml::new();
    access_key_xml(&mut x, &creds);
    x.elem("Certificate", &cert)
        .elem("CloudCertificate", ca.cert_pem());
    Ok(x.finish())
}

fn get_credentials(ctx: &Context) -> Result<String, QueryError> {
    let nonempty = |name| ctx.request.get(name).filter(|v: &&str| !v.is_empty());
    let (account, user) = (nonempty("AccountName"), nonempty("UserName"));
    let zip = credentials(ctx.identity, ctx.urls, ctx.caller, account, user)?;
    let account_name = account.unwrap_or(if ctx.caller.is_cloud_admin() {
        ADMIN_ACCOUNT
    } else {
        &ctx.caller.account_name
    });
    let mut x = Xml::new();
    x.elem("AccountName", account_name)
        .elem("UserName", user.unwrap_or(ADMIN_USER))
        .elem(
            "Credentials",
            &base64::engine::general_purpose::STANDARD.encode(zip),
        );
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::SecretSource;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use rsa::pkcs8::EncodePublicKey;

    struct Cloud {
        _dir: tempfile::TempDir,
        identity: Identity,
        urls: ServiceUrls,
    }

    fn cloud() -> Cloud {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::open(dir.path()).unwrap();
        identity.ensure_admin().unwrap();
        Cloud {
            _dir: dir,
            identity,
            urls: urls(),
        }
    }

    fn urls() -> ServiceUrls {
        ServiceUrls {
            s3_url: "http://h:1/services/Walrus".into(),
            ec2_url: None,
            euare_url: None,
            region: "r".into(),
        }
    }

    fn principal(identity: &Identity, akid: &str) -> Principal {
        identity.secret(akid).unwrap().0
    }

    fn call(
        cloud: &Cloud,
        caller: &Principal,
        params: &[(&str, &str)],
    ) -> Result<String, QueryError> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
            .collect();
        let request = QueryRequest::new(&query.join("&"), b"", &http::HeaderMap::new());
        let action = request.required("Action")?.to_owned();
        dispatch(
            &Context {
                identity: &cloud.identity,
                urls: &cloud.urls,
                caller,
                request: &request,
                request_id: "rid",
            },
            &action,
        )
    }

    fn text(xml: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        let start = xml.find(&open).unwrap() + open.len();
        xml[start..start + xml[start..].find('<').unwrap()].to_owned()
    }

    /// IAM's response document of `action` around `result`, as clients have always read it.
    fn iam(action: &str, result: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
             xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><{action}Result>{result}\
             </{action}Result><ResponseMetadata><RequestId>rid</RequestId></ResponseMetadata>\
             </{action}Response>"
        )
    }

    #[test]
    fn accounts_users_and_keys_are_written_byte_for_byte() {
        let cloud = cloud();
        let (root, _) = cloud.identity.ensure_admin().unwrap();
        let root = principal(&cloud.identity, &root.access_key_id);

        let account = call(
            &cloud,
            &root,
            &[("Action", "CreateAccount"), ("AccountName", "dave")],
        )
        .unwrap();
        let dave = cloud.identity.account_id("dave").unwrap().unwrap();
        let (akid, secret) = (
            text(&account, "AccessKeyId"),
            text(&account, "SecretAccessKey"),
        );
        assert_eq!(
            account,
            iam(
                "CreateAccount",
                &format!(
                    "<Account><AccountName>dave</AccountName><AccountId>{dave}</AccountId>\
                     </Account><AccessKey><UserName>admin</UserName><AccessKeyId>{akid}\
                     </AccessKeyId><Status>Active</Status><SecretAccessKey>{secret}\
                     </SecretAccessKey></AccessKey>"
                )
            )
        );
        let admin = principal(&cloud.identity, &akid);

        let user = call(
            &cloud,
            &admin,
            &[("Action", "CreateUser"), ("UserName", "bob")],
        )
        .unwrap();
        assert_eq!(
            user,
            iam(
                "CreateUser",
                &format!(
                    "<User><Path>/</Path><UserName>bob</UserName>\
                     <Arn>arn:aws:iam::{dave}:user/bob</Arn></User>"
                )
            )
        );
        assert_eq!(
            call(&cloud, &admin, &[("Action", "ListUsers")]).unwrap(),
            iam(
                "ListUsers",
                &format!(
                    "<Users><member><Path>/</Path><UserName>admin</UserName>\
                     <Arn>arn:aws:iam::{dave}:user/admin</Arn></member><member><Path>/</Path>\
                     <UserName>bob</UserName><Arn>arn:aws:iam::{dave}:user/bob</Arn></member>\
                     </Users><IsTruncated>false</IsTruncated>"
                )
            )
        );

        let key = call(
            &cloud,
            &admin,
            &[("Action", "CreateAccessKey"), ("UserName", "bob")],
        )
        .unwrap();
        let (akid, secret) = (text(&key, "AccessKeyId"), text(&key, "SecretAccessKey"));
        assert_eq!(
            key,
            iam(
                "CreateAccessKey",
                &format!(
                    "<AccessKey><UserName>bob</UserName><AccessKeyId>{akid}</AccessKeyId>\
                     <Status>Active</Status><SecretAccessKey>{secret}</SecretAccessKey>\
                     </AccessKey>"
                )
            )
        );
        let update = [
            ("Action", "UpdateAccessKey"),
            ("UserName", "bob"),
            ("AccessKeyId", &akid),
            ("Status", "Inactive"),
        ];
        // An action without a result answers with the request id alone.
        assert_eq!(
            call(&cloud, &admin, &update).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<UpdateAccessKeyResponse \
             xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ResponseMetadata>\
             <RequestId>rid</RequestId></ResponseMetadata></UpdateAccessKeyResponse>"
        );
        let listed = call(
            &cloud,
            &admin,
            &[("Action", "ListAccessKeys"), ("UserName", "bob")],
        )
        .unwrap();
        let created = text(&listed, "CreateDate");
        assert_eq!(
            listed,
            iam(
                "ListAccessKeys",
                &format!(
                    "<UserName>bob</UserName><AccessKeyMetadata><member><UserName>bob\
                     </UserName><AccessKeyId>{akid}</AccessKeyId><Status>Inactive</Status>\
                     <CreateDate>{created}</CreateDate></member></AccessKeyMetadata>\
                     <IsTruncated>false</IsTruncated>"
                )
            )
        );

        // Empty lists are an element opened and closed, not an empty element.
        call(
            &cloud,
            &admin,
            &[
                ("Action", "DeleteAccessKey"),
                ("UserName", "bob"),
                ("AccessKeyId", &akid),
            ],
        )
        .unwrap();
        assert_eq!(
            call(
                &cloud,
                &admin,
                &[("Action", "ListAccessKeys"), ("UserName", "bob")]
            )
            .unwrap(),
            iam(
                "ListAccessKeys",
                "<UserName>bob</UserName><AccessKeyMetadata></AccessKeyMetadata>\
                 <IsTruncated>false</IsTruncated>"
            )
        );
        assert_eq!(
            call(&cloud, &admin, &[("Action", "ListSigningCertificates")]).unwrap(),
            iam(
                "ListSigningCertificates",
                "<UserName>admin</UserName><Certificates></Certificates>\
                 <IsTruncated>false</IsTruncated>"
            )
        );
    }

    #[test]
    fn certificates_and_credentials_are_written_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            Identity::open_with_ca(&dir.path().join("db"), &dir.path().join("keys")).unwrap();
        let (root, _) = identity.ensure_admin().unwrap();
        let cloud = Cloud {
            _dir: dir,
            identity,
            urls: urls(),
        };
        let root = principal(&cloud.identity, &root.access_key_id);
        let ca_pem = cloud.identity.cloud_ca().unwrap().cert_pem().to_owned();

        let created = call(&cloud, &root, &[("Action", "CreateSigningCertificate")]).unwrap();
        let cert = cloud
            .identity
            .list_signing_certificates(&root.account_id, "admin")
            .unwrap()
            .remove(0);
        let (id, body) = (&cert.certificate_id, &cert.cert_pem);
        let (key, date) = (text(&created, "PrivateKey"), text(&created, "UploadDate"));
        assert!(
            key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
            "{key}"
        );
        assert_eq!(
            created,
            iam(
                "CreateSigningCertificate",
                &format!(
                    "<Certificate><UserName>admin</UserName><CertificateId>{id}\
                     </CertificateId><CertificateBody>{body}</CertificateBody><PrivateKey>{key}\
                     </PrivateKey><Status>Active</Status><UploadDate>{date}</UploadDate>\
                     </Certificate>"
                )
            )
        );
        assert_eq!(
            call(&cloud, &root, &[("Action", "ListSigningCertificates")]).unwrap(),
            iam(
                "ListSigningCertificates",
                &format!(
                    "<UserName>admin</UserName><Certificates><member><UserName>admin</UserName>\
                     <CertificateId>{id}</CertificateId><CertificateBody>{body}\
                     </CertificateBody><Status>Active</Status><UploadDate>{date}</UploadDate>\
                     </member></Certificates><IsTruncated>false</IsTruncated>"
                )
            )
        );

        let credentials = call(&cloud, &root, &[("Action", "GetCredentials")]).unwrap();
        let zip = text(&credentials, "Credentials");
        assert!(!zip.is_empty());
        assert_eq!(
            credentials,
            iam(
                "GetCredentials",
                &format!(
                    "<AccountName>eucalyptus</AccountName><UserName>admin</UserName>\
                     <Credentials>{zip}</Credentials>"
                )
            )
        );

        let public_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .unwrap()
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let registered = call(
            &cloud,
            &root,
            &[
                ("Action", "RegisterComponent"),
                ("Kind", "walrus"),
                ("ComponentName", "walrus"),
                ("PublicKey", &public_key),
            ],
        )
        .unwrap();
        let (akid, secret) = (
            text(&registered, "AccessKeyId"),
            text(&registered, "SecretAccessKey"),
        );
        let issued = text(&registered, "Certificate");
        assert!(
            issued.starts_with("-----BEGIN CERTIFICATE-----\n"),
            "{issued}"
        );
        assert_eq!(
            registered,
            iam(
                "RegisterComponent",
                &format!(
                    "<AccessKey><UserName>walrus</UserName><AccessKeyId>{akid}</AccessKeyId>\
                     <Status>Active</Status><SecretAccessKey>{secret}</SecretAccessKey>\
                     </AccessKey><Certificate>{issued}</Certificate><CloudCertificate>{ca_pem}\
                     </CloudCertificate>"
                )
            )
        );
    }

    #[test]
    fn account_admins_manage_users_and_keys() {
        let cloud = cloud();
        let alice = cloud.identity.create_account("alice").unwrap();
        let admin = principal(&cloud.identity, &alice.access_key_id);

        let created = call(
            &cloud,
            &admin,
            &[("Action", "CreateUser"), ("UserName", "bob")],
        )
        .unwrap();
        assert!(created.starts_with("<?xml"));
        assert!(created.contains(&format!(
            "<CreateUserResponse xmlns=\"{NAMESPACE}\"><CreateUserResult><User>"
        )));
        assert!(created.contains(&format!(
            "<Arn>arn:aws:iam::{}:user/bob</Arn>",
            alice.account_id
        )));
        assert!(created.contains("<RequestId>rid</RequestId>"));
        let dup = call(
            &cloud,
            &admin,
            &[("Action", "CreateUser"), ("UserName", "bob")],
        )
        .unwrap_err();
        assert!(matches!(dup, QueryError::EntityAlreadyExists(_)));
        let users = call(&cloud, &admin, &[("Action", "ListUsers")]).unwrap();
        assert!(
            users.contains("<UserName>admin</UserName>")
                && users.contains("<UserName>bob</UserName>")
        );

        let key = call(
            &cloud,
            &admin,
            &[("Action", "CreateAccessKey"), ("UserName", "bob")],
        )
        .unwrap();
        let akid = text(&key, "AccessKeyId");
        assert_eq!(text(&key, "SecretAccessKey").len(), 40);
        let bob = principal(&cloud.identity, &akid);
        assert_eq!(bob.user_name, "bob");

        // bob is not his account's admin: he may manage nothing.
        let denied = call(
            &cloud,
            &bob,
            &[("Action", "CreateUser"), ("UserName", "eve")],
        )
        .unwrap_err();
        assert!(matches!(denied, QueryError::AccessDenied(_)));
        assert!(matches!(
            call(&cloud, &bob, &[("Action", "ListAccessKeys")]),
            Err(QueryError::AccessDenied(_))
        ));

        let listed = call(
            &cloud,
            &admin,
            &[("Action", "ListAccessKeys"), ("UserName", "bob")],
        )
        .unwrap();
        assert!(listed.contains(&format!(
            "<AccessKeyId>{akid}</AccessKeyId><Status>Active</Status><CreateDate>"
        )));
        call(
            &cloud,
            &admin,
            &[
                ("Action", "UpdateAccessKey"),
                ("UserName", "bob"),
                ("AccessKeyId", &akid),
                ("Status", "Inactive"),
            ],
        )
        .unwrap();
        assert!(cloud.identity.secret(&akid).is_none());
        let bad = call(
            &cloud,
            &admin,
            &[
                ("Action", "UpdateAccessKey"),
                ("UserName", "bob"),
                ("AccessKeyId", &akid),
                ("Status", "Off"),
            ],
        )
        .unwrap_err();
        assert!(matches!(bad, QueryError::Validation(_)));
        call(
            &cloud,
            &admin,
            &[
                ("Action", "DeleteAccessKey"),
                ("UserName", "bob"),
                ("AccessKeyId", &akid),
            ],
        )
        .unwrap();
        let gone = call(
            &cloud,
            &admin,
            &[
                ("Action", "DeleteAccessKey"),
                ("UserName", "bob"),
                ("AccessKeyId", &akid),
            ],
        )
        .unwrap_err();
        assert!(matches!(gone, QueryError::NoSuchEntity(_)));
        assert!(matches!(
            call(
                &cloud,
                &admin,
                &[("Action", "ListAccessKeys"), ("UserName", "nobody")]
            ),
            Err(QueryError::NoSuchEntity(_))
        ));

        // Without UserName, keys are the caller's; two at most.
        call(&cloud, &admin, &[("Action", "CreateAccessKey")]).unwrap();
        let third = call(&cloud, &admin, &[("Action", "CreateAccessKey")]).unwrap_err();
        assert!(matches!(third, QueryError::LimitExceeded(_)));

        assert!(matches!(
            call(&cloud, &admin, &[("Action", "DeleteLoginProfile")]),
            Err(QueryError::InvalidAction(_))
        ));
        // DeleteUser takes the user with its keys; nobody deletes themselves.
        call(
            &cloud,
            &admin,
            &[("Action", "DeleteUser"), ("UserName", "bob")],
        )
        .unwrap();
        assert!(!cloud
            .identity
            .list_users(&admin.account_id)
            .unwrap()
            .contains(&"bob".to_owned()));
        assert!(matches!(
            call(
                &cloud,
                &admin,
                &[("Action", "DeleteUser"), ("UserName", "admin")]
            ),
            Err(QueryError::Validation(_))
        ));
        let sigs = call(&cloud, &admin, &[("Action", "ListSigningCertificates")]).unwrap();
        assert!(sigs.contains("<Certificates></Certificates>"), "{sigs}");
        // This store has no CA: certificates cannot be issued.
        assert!(matches!(
            call(&cloud, &admin, &[("Action", "CreateSigningCertificate")]),
            Err(QueryError::Internal(_))
        ));
    }

    #[test]
    fn only_the_cloud_admin_delegates() {
        let cloud = cloud();
        let (root, _) = cloud.identity.ensure_admin().unwrap();
        let root = principal(&cloud.identity, &root.access_key_id);
        let alice = cloud.identity.create_account("alice").unwrap();
        let alice = principal(&cloud.identity, &alice.access_key_id);
        cloud.identity.create_account("carol").unwrap();

        call(
            &cloud,
            &root,
            &[
                ("Action", "CreateUser"),
                ("UserName", "u1"),
                ("DelegateAccount", "carol"),
            ],
        )
        .unwrap();
        let carol_id = cloud.identity.account_id("carol").unwrap().unwrap();
        assert!(cloud
            .identity
            .list_users(&carol_id)
            .unwrap()
            .contains(&"u1".to_owned()));
        assert!(matches!(
            call(
                &cloud,
                &root,
                &[("Action", "ListUsers"), ("DelegateAccount", "nope")]
            ),
            Err(QueryError::NoSuchEntity(_))
        ));
        for action in ["ListUsers", "GetCredentials", "CreateAccount"] {
            let err = call(
                &cloud,
                &alice,
                &[
                    ("Action", action),
                    ("DelegateAccount", "carol"),
                    ("AccountName", "x"),
                ],
            )
            .unwrap_err();
            assert!(
                matches!(err, QueryError::AccessDenied(_)),
                "{action}: {err}"
            );
        }
    }

    #[test]
    fn an_account_admin_gets_its_own_accounts_credentials_only() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, _) =
            Identity::open_with_ca(&dir.path().join("db"), &dir.path().join("keys")).unwrap();
        identity.ensure_admin().unwrap();
        let cloud = Cloud {
            _dir: dir,
            identity,
            urls: urls(),
        };
        let alice = cloud.identity.create_account("alice").unwrap();
        cloud.identity.create_account("carol").unwrap();
        cloud
            .identity
            .create_user(&alice.account_id, "bob")
            .unwrap();
        let bob_key = cloud
            .identity
            .create_access_key(&alice.account_id, "bob")
            .unwrap();
        let alice = principal(&cloud.identity, &alice.access_key_id);
        let bob = principal(&cloud.identity, &bob_key.access_key_id);
        let own = call(&cloud, &alice, &[("Action", "GetCredentials")]).unwrap();
        assert_eq!(text(&own, "AccountName"), "alice");
        let of_bob = credentials(&cloud.identity, &cloud.urls, &alice, None, Some("bob")).unwrap();
        assert!(!of_bob.is_empty());
        for (caller, account) in [
            (&alice, Some("carol")),
            (&alice, Some("eucalyptus")),
            (&bob, None),
        ] {
            let refused = credentials(&cloud.identity, &cloud.urls, caller, account, None);
            assert!(
                matches!(refused, Err(QueryError::AccessDenied(_))),
                "{account:?}: {refused:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_account_is_deleted_only_once_it_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cloud = crate::testing::cloud_in(dir.path(), crate::testing::settings());
        let identity = &cloud.identity;
        let (root, _) = identity.ensure_admin().unwrap();
        let root = principal(identity, &root.access_key_id);
        let erin = identity.create_account("erin").unwrap();
        let erin_admin = principal(identity, &erin.access_key_id);
        identity.create_user(&erin.account_id, "frank").unwrap();
        let other = identity.create_account("other").unwrap();
        let other_admin = principal(identity, &other.access_key_id);
        let ec2 = |who: &Principal, action: &'static str, params: Vec<(&'static str, String)>| {
            let (cloud, who) = (cloud.clone(), who.clone());
            async move {
                let params: Vec<(&str, &str)> =
                    params.iter().map(|(k, v)| (*k, v.as_str())).collect();
                crate::ec2::act(&cloud, &who, action, &params).await
            }
        };
        ec2(&erin_admin, "CreateKeyPair", vec![("KeyName", "k".into())])
            .await
            .unwrap();
        let made = ec2(
            &erin_admin,
            "CreateSecurityGroup",
            vec![
                ("GroupName", "web".into()),
                ("GroupDescription", "w".into()),
            ],
        )
        .await
        .unwrap();
        let web = text(&made, "groupId");
        // Another account lets erin's group in.
        let rule = vec![
            ("GroupName", "default".to_owned()),
            ("IpPermissions.1.IpProtocol", "tcp".into()),
            ("IpPermissions.1.FromPort", "22".into()),
            ("IpPermissions.1.ToPort", "22".into()),
            ("IpPermissions.1.Groups.1.GroupId", web.clone()),
            ("IpPermissions.1.Groups.1.UserId", erin.account_id.clone()),
        ];
        ec2(&other_admin, "AuthorizeSecurityGroupIngress", rule.clone())
            .await
            .unwrap();
        let mut running = crate::testing::instance("i-0000000e", rpc::InstanceState::Running, None);
        running.owner = erin.account_id.clone();
        cloud.state.put(&running.id, &running).unwrap();

        let conflict = |result: Result<(), QueryError>| match result {
            Err(QueryError::DeleteConflict(why)) => why,
            other => panic!("expected DeleteConflict, got {other:?}"),
        };
        assert!(matches!(
            delete_account(&cloud, &erin_admin, "erin", true).await,
            Err(QueryError::AccessDenied(_))
        ));
        assert!(matches!(
            delete_account(&cloud, &root, "eucalyptus", true).await,
            Err(QueryError::Validation(_))
        ));
        assert!(matches!(
            delete_account(&cloud, &root, "nobody", true).await,
            Err(QueryError::NoSuchEntity(_))
        ));
        let why = conflict(delete_account(&cloud, &root, "erin", false).await);
        assert!(why.contains("i-0000000e") && why.contains("frank"), "{why}");
        let why = conflict(delete_account(&cloud, &root, "erin", true).await);
        assert!(
            why.contains("i-0000000e") && !why.contains("frank"),
            "{why}"
        );

        running.state = rpc::InstanceState::Terminated;
        cloud.state.put(&running.id, &running).unwrap();
        let why = conflict(delete_account(&cloud, &root, "erin", true).await);
        assert!(
            why.contains(&web) && why.contains(&other.account_id),
            "{why}"
        );
        // Nothing went while refused.
        assert!(identity.secret(&erin.access_key_id).is_some());
        let pairs = ec2(&erin_admin, "DescribeKeyPairs", vec![]).await.unwrap();
        assert!(pairs.contains("<keyName>k</keyName>"), "{pairs}");

        ec2(&other_admin, "RevokeSecurityGroupIngress", rule.clone())
            .await
            .unwrap();
        delete_account(&cloud, &root, "erin", true).await.unwrap();
        assert!(identity.secret(&erin.access_key_id).is_none());
        assert_eq!(identity.account_id("erin").unwrap(), None);
        let pairs = ec2(&erin_admin, "DescribeKeyPairs", vec![]).await.unwrap();
        assert!(!pairs.contains("<keyName>"), "{pairs}");
        assert_eq!(crate::groups::owner_of(&cloud, &web).unwrap(), None);
        // The other account is untouched.
        assert!(identity.secret(&other.access_key_id).is_some());
    }
}
