//! Euare, Eucalyptus' account service (IAM's API at `/services/Euare`). Today: the cloud
//! admin creates accounts. Users, keys and certificates follow with the cloud controller.

use identity::{Identity, IdentityError, Principal};

use crate::query::{escape, QueryRequest};
use crate::QueryError;

/// IAM's XML namespace, which Euare answers in.
pub const NAMESPACE: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// Runs one Euare action for an authenticated caller and returns the response document.
pub fn dispatch(
    identity: &Identity,
    caller: &Principal,
    action: &str,
    request: &QueryRequest,
    request_id: &str,
) -> Result<String, QueryError> {
    match action {
        "CreateAccount" => create_account(identity, caller, request, request_id),
        other => Err(QueryError::InvalidAction(other.to_owned())),
    }
}

/// `CreateAccount AccountName=NAME`: only the cloud admin may. Like Eucalyptus it makes the
/// account with its `admin` user; Koala also returns that user's first access key (an
/// extension: Eucalyptus needs a second call, `CreateAccessKey DelegateAccount=NAME`).
fn create_account(
    identity: &Identity,
    caller: &Principal,
    request: &QueryRequest,
    request_id: &str,
) -> Result<String, QueryError> {
    if !caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied("CreateAccount".to_owned()));
    }
    let name = request.required("AccountName")?;
    let creds = identity.create_account(name).map_err(|err| match err {
        IdentityError::AccountExists(_) => {
            QueryError::EntityAlreadyExists(format!("Account {name} already exists."))
        }
        IdentityError::InvalidName(_) => QueryError::Validation(err.to_string()),
        other => QueryError::Internal(other.to_string()),
    })?;
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateAccountResponse xmlns=\"{NAMESPACE}\"><CreateAccountResult><Account><AccountName>{name}</AccountName><AccountId>{id}</AccountId></Account><AccessKey><UserName>{user}</UserName><AccessKeyId>{akid}</AccessKeyId><Status>Active</Status><SecretAccessKey>{secret}</SecretAccessKey></AccessKey></CreateAccountResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></CreateAccountResponse>",
        name = escape(&creds.account_name),
        id = creds.account_id,
        user = escape(&creds.user_name),
        akid = creds.access_key_id,
        secret = escape(&creds.secret_access_key),
        rid = request_id,
    ))
}
