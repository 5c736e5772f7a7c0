//! The relying-party connectors against local fakes of each service's
//! documented API (one file per service, the documentation cited beside
//! its fake): what each connector sends — method, path, query, credentials,
//! body — and how it reads each answer: sessions ended, no such user, rate
//! limits, refused credentials, tokens reused until they expire.

mod auth0;
mod entra;
mod fake;
mod google;
mod keycloak;
mod okta;
mod slack;

use portcullis_control_plane::relying_parties::settings::{validate, RawRelyingParty};
use portcullis_control_plane::relying_parties::{self, Action, Delivery, RelyingParty, Termination};
use serde::Deserialize;

/// `terminate_user` for `email`.
pub fn termination(email: &str) -> Termination {
    Termination {
        action: Action::TerminateUser,
        user: format!("email:{email}"),
        email: Some(email.to_owned()),
        session_id: None,
        reason: "left the company".into(),
        at_ms: 1_764_684_000_000,
    }
}

/// The relying party one `[[relying_parties]]` entry configures, its
/// credential read from the (fake) environment `env`; or why not.
pub fn try_build(entry: &str, env: &[(&str, &str)]) -> Result<RelyingParty, String> {
    #[derive(Deserialize)]
    struct File {
        relying_parties: Vec<RawRelyingParty>,
    }
    let file: File = toml::from_str(&format!("[[relying_parties]]\n{entry}")).expect("test TOML");
    let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned());
    let settings = validate(file.relying_parties, false, &lookup).map_err(|e| e.to_string())?;
    let mut built = relying_parties::build(&settings).map_err(|e| e.to_string())?;
    Ok(built.remove(0))
}

/// [`try_build`] that must succeed.
pub fn build(entry: &str, env: &[(&str, &str)]) -> RelyingParty {
    try_build(entry, env).unwrap_or_else(|e| panic!("builds: {e}"))
}

/// `terminate_user` for `email` delivered to `rp`.
pub async fn deliver(rp: &RelyingParty, email: &str) -> Delivery {
    rp.connector.deliver(&termination(email), "job-1").await
}

/// The answer for a user the relying party does not know.
pub fn no_account() -> Delivery {
    Delivery::Applied { detail: Some("no account at this relying party".into()) }
}

/// The error of a `Failed` delivery.
pub fn failed(delivery: Delivery) -> String {
    match delivery {
        Delivery::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The wait of a `Retry` delivery, in whole seconds.
pub fn retry_after_s(delivery: Delivery) -> u64 {
    match delivery {
        Delivery::Retry { after: Some(after), .. } => after.as_secs(),
        other => panic!("expected a retry with a wait, got {other:?}"),
    }
}
