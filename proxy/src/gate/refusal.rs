//! Why the gate turned a request or flow away, as a value: the HTTP
//! renderer (`proxy.rs`) and the CONNECT renderer (`tunnel`) each turn it
//! into their own answer, so both say the same thing for the same reason.
//!
//! What a refusal says is for the person or program that was refused, so
//! it never carries what the policy knows: a denial (a rule, a default
//! deny, a lock with the admin's reason) says only that access is denied,
//! with the [`DenialReference`] under which the audit log keeps the
//! details; the admin searches for it (`portcullis audit --reference`).

use std::borrow::Cow;

use portcullis_policy::edge_channel::DenialReference;
use portcullis_policy::TargetError;

/// A refusal, before it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 503: no snapshot yet (fail closed).
    NoSnapshot,
    /// 503: the snapshot is older than `max_staleness` and `stale_mode = deny`.
    Stale,
    /// 400: the request target has no single meaning.
    BadTarget(TargetError),
    /// 400: `;` path parameters on a route that does not allow them.
    PathParameters,
    /// 400: `Upgrade: websocket` that is not a valid handshake.
    BadUpgrade(&'static str),
    /// 401 / 302 / 407: log in (again); the message says why.
    LoginRequired(String),
    /// 401 / 302 / 407: the route wants a login at most `max_age` seconds
    /// old (`logged_in_within`); the IdP must authenticate the user again.
    Reauthenticate {
        /// Why, for the person.
        why: String,
        /// Seconds: the OIDC `max_age` the login asks for.
        max_age: u32,
    },
    /// 503: the party that vouches for the credential cannot be reached.
    CredentialUnavailable,
    /// 429: too many credential look-ups from this client.
    RateLimited,
    /// 403: the policy denies it (or the user is locked); the reference of
    /// the audit row that says why.
    Forbidden(DenialReference),
    /// 404: no route serves this host and path, or this CONNECT name.
    NoRoute(String),
    /// 421: this HTTP/2 connection already carries as many identities as it may.
    Misdirected,
}

impl Refusal {
    /// The machine-readable code (JSON `error.code`, `X-Portcullis-Error`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSnapshot => "no_snapshot",
            Self::Stale => "stale_snapshot",
            Self::BadTarget(_) => "bad_request_target",
            Self::PathParameters => "path_parameters",
            Self::BadUpgrade(_) => "bad_upgrade",
            Self::LoginRequired(_) => "login_required",
            Self::Reauthenticate { .. } => "login_too_old",
            Self::CredentialUnavailable => "credential_unavailable",
            Self::RateLimited => "rate_limited",
            Self::Forbidden(_) => "forbidden",
            Self::NoRoute(_) => "no_route",
            Self::Misdirected => "misdirected_request",
        }
    }

    /// The HTTP status (CONNECT turns 401 into 407).
    pub fn status(&self) -> u16 {
        match self {
            Self::NoSnapshot | Self::Stale | Self::CredentialUnavailable => 503,
            Self::BadTarget(_) | Self::PathParameters | Self::BadUpgrade(_) => 400,
            Self::LoginRequired(_) | Self::Reauthenticate { .. } => 401,
            Self::RateLimited => 429,
            Self::Forbidden(_) => 403,
            Self::NoRoute(_) => 404,
            Self::Misdirected => 421,
        }
    }

    /// A short title for the HTML page.
    pub fn title(&self) -> &'static str {
        match self {
            Self::NoSnapshot | Self::Stale | Self::CredentialUnavailable => "Temporarily unavailable",
            Self::BadTarget(_) | Self::PathParameters | Self::BadUpgrade(_) => "Bad request",
            Self::LoginRequired(_) | Self::Reauthenticate { .. } => "Login required",
            Self::RateLimited => "Too many requests",
            Self::Forbidden(_) => "Access denied",
            Self::NoRoute(_) => "Not found",
            Self::Misdirected => "Misdirected request",
        }
    }

    /// One sentence for the person or program that sent the request.
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            Self::NoSnapshot => {
                "This edge has not received its policy from the control plane yet. Try again in a moment.".into()
            }
            Self::Stale => "This edge has lost contact with the control plane and is configured to refuse \
                            requests until it is back."
                .into(),
            Self::BadTarget(error) => format!("The request target was refused: {error}.").into(),
            Self::PathParameters => "This application does not accept `;` parameters in the path.".into(),
            Self::BadUpgrade(why) => format!("The websocket handshake was refused: {why}.").into(),
            Self::Forbidden(_) => "You do not have access to this. If you think you should, contact your \
                                   administrator and quote the reference."
                .into(),
            Self::LoginRequired(why) | Self::NoRoute(why) | Self::Reauthenticate { why, .. } => why.as_str().into(),
            Self::CredentialUnavailable => "Your credential cannot be checked right now because the party that \
                                            issued it cannot be reached. Try again in a moment."
                .into(),
            Self::RateLimited => "Too many credential checks from your address. Try again in a moment.".into(),
            Self::Misdirected => {
                "This connection already carries other users' requests; retry on a new connection.".into()
            }
        }
    }

    /// The reference to show with the answer (denials only).
    pub fn reference(&self) -> Option<DenialReference> {
        match self {
            Self::Forbidden(reference) => Some(*reference),
            _ => None,
        }
    }

    /// Whether a `Retry-After` belongs on the answer.
    pub fn retry_after(&self) -> Option<&'static str> {
        match self {
            Self::NoSnapshot | Self::Stale | Self::CredentialUnavailable => Some("5"),
            Self::RateLimited => Some("1"),
            _ => None,
        }
    }

    /// The metrics label (`outcome` of requests and flows).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NoSnapshot | Self::Stale | Self::CredentialUnavailable => "unavailable",
            Self::BadTarget(_) | Self::PathParameters | Self::BadUpgrade(_) | Self::Misdirected => "bad-request",
            Self::LoginRequired(_) | Self::Reauthenticate { .. } => "login-required",
            Self::RateLimited => "rate-limited",
            Self::Forbidden(_) => "deny",
            Self::NoRoute(_) => "no-route",
        }
    }
}
