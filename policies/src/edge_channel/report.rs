//! `POST /edge/v1/report`: what an edge applied and closed, and its session
//! activity (sightings, connection counts, address changes, denials, live
//! connections closed and TCP flows, which land in the audit log). Sent at least every second; the
//! control plane refuses unknown fields.

use serde::{Deserialize, Serialize};

use super::DenialReference;

/// What an edge reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBody {
    /// Sequence applied.
    pub applied_seq: u64,
    /// Live connections now.
    #[serde(default)]
    pub live_connections: i64,
    /// Connections closed per change since the last report.
    #[serde(default)]
    pub closed: Vec<ClosedConnections>,
    /// Batched session activity.
    #[serde(default)]
    pub activity: Vec<ActivityEvent>,
    /// `activity` names every session with live connections on this edge
    /// (`live_connections` events): the control plane forgets this edge's
    /// counts of the sessions it does not name. Sent by a newly started
    /// edge and then every minute, so counts cannot drift.
    #[serde(default)]
    pub connections_complete: bool,
}

/// Connections closed because of one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosedConnections {
    /// The change's sequence.
    pub seq: u64,
    /// Connections closed because of it.
    pub connections: i64,
}

/// Session activity as edges report it (`kind` names the variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum ActivityEvent {
    /// A request of the session was served.
    Seen {
        /// Session id.
        session_id: String,
        /// Client address.
        source_address: String,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// Connections of the session opened (+) or closed (−) (edges before
    /// `live_connections`).
    Connections {
        /// Session id.
        session_id: String,
        /// Change in live connections.
        delta: i64,
    },
    /// The session's live connections on this edge now.
    LiveConnections {
        /// Session id.
        session_id: String,
        /// How many (0: none any more).
        connections: i64,
    },
    /// A session was used from another address than at login.
    AddressChanged {
        /// Session id.
        session_id: String,
        /// Address at login.
        from: String,
        /// Address now.
        to: String,
        /// The route refuses such requests (`on_ip_change: deny`).
        denied: bool,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// TCP flows (CONNECT tunnels) of one session, route and source opened
    /// since the last report.
    FlowOpened {
        /// The session, for session tokens.
        session_id: Option<String>,
        /// Email, or subject (empty for an anonymous flow).
        user: String,
        /// Route name.
        route: String,
        /// The CONNECT target, `host:port`.
        target: String,
        /// Client address.
        source_address: String,
        /// How many flows (1 when absent).
        #[serde(default = "one_flow")]
        flows: u64,
        /// When the first of them opened (Unix ms).
        first_at_ms: Option<i64>,
        /// When the last of them opened (Unix ms).
        at_ms: i64,
    },
    /// TCP flows of one session, route and source that ended the same way
    /// since the last report.
    FlowClosed {
        /// The session, for session tokens.
        session_id: Option<String>,
        /// Email, or subject (empty for an anonymous flow).
        user: String,
        /// Route name.
        route: String,
        /// The CONNECT target, `host:port`.
        target: String,
        /// Client address.
        source_address: String,
        /// Bytes from the clients to the upstream.
        bytes_up: u64,
        /// Bytes from the upstream to the clients.
        bytes_down: u64,
        /// When the first of them opened (Unix ms).
        opened_at_ms: i64,
        /// How many flows (1 when absent).
        #[serde(default = "one_flow")]
        flows: u64,
        /// When the first of them closed (Unix ms).
        first_at_ms: Option<i64>,
        /// How long the longest lasted.
        duration_ms: i64,
        /// How long the shortest lasted.
        shortest_ms: Option<i64>,
        /// `closed`, `error`, `access_ended` (closed by Portcullis) or `edge_shutdown`.
        ended_by: String,
        /// When (Unix ms).
        at_ms: i64,
    },
    /// A request was denied by policy.
    Denied {
        /// Email, or subject for identities without one.
        user: String,
        /// The session, for browser sessions.
        session_id: Option<String>,
        /// Route name.
        route: String,
        /// Why.
        reason: String,
        /// Client address.
        source_address: String,
        /// When (Unix ms): the last of them, for several.
        at_ms: i64,
        /// How many such denials this stands for (1 when absent): the edge
        /// reports the first ones one by one and sums the rest of a burst.
        #[serde(default = "one_flow")]
        count: u64,
        /// When the first of them happened (Unix ms), for several.
        #[serde(default)]
        first_at_ms: Option<i64>,
        /// The reference the client was shown instead of the reason (for a
        /// summed burst, the one all of its denials showed); absent from
        /// edges that predate references.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<DenialReference>,
    },
    /// Live connections the edge closed because access ended (a
    /// termination, a lock, a policy or group change, an expiry), summed per
    /// session or user, route, source and reason since the last report.
    ConnectionsClosed {
        /// The session, for session tokens.
        session_id: Option<String>,
        /// Email, or subject (empty for anonymous connections).
        user: String,
        /// Route name (the target, `host` or CONNECT name, when no route
        /// serves it any more).
        route: String,
        /// Client address.
        source_address: String,
        /// Why: `session_terminated`, `user`, `token_revoked`,
        /// `policy_changed`, `expired`, `stale_snapshot`, `key_revoked` or
        /// `claims_changed`.
        reason: String,
        /// How many connections.
        connections: u64,
        /// When the first of them closed (Unix ms).
        first_at_ms: i64,
        /// When the last of them closed (Unix ms).
        at_ms: i64,
    },
}

impl ActivityEvent {
    /// Its `kind` as sent: `seen`, `connections`, `live_connections`, `address_changed`,
    /// `flow_opened`, `flow_closed`, `denied` or `connections_closed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Seen { .. } => "seen",
            Self::Connections { .. } => "connections",
            Self::LiveConnections { .. } => "live_connections",
            Self::AddressChanged { .. } => "address_changed",
            Self::FlowOpened { .. } => "flow_opened",
            Self::FlowClosed { .. } => "flow_closed",
            Self::Denied { .. } => "denied",
            Self::ConnectionsClosed { .. } => "connections_closed",
        }
    }
}

/// One, for counts absent from the wire.
fn one_flow() -> u64 {
    1
}
