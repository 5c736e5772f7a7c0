//! The portal's OpenID provider (admins' logins), discovered on first use,
//! and the portal's state that holds it. Below the shared state (`App`)
//! and the portal's handlers, which both use it.

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{ClientId, ClientSecret, RedirectUrl};

use super::Discovery;
use crate::config::{Config, PortalOidc};

/// The portal's own state: its OpenID provider, when one is configured.
pub struct PortalState {
    idp: Option<PortalIdp>,
}

impl PortalState {
    /// The state for `config` (nothing is fetched yet).
    pub fn new(config: &Config) -> Self {
        Self { idp: config.portal.oidc.clone().map(PortalIdp::new) }
    }

    /// The OpenID provider, if admins log in with one.
    pub fn idp(&self) -> Option<&PortalIdp> {
        self.idp.as_ref()
    }
}

/// The portal's OpenID provider, discovered on first use (see [`Discovery`]).
pub struct PortalIdp {
    pub(crate) settings: PortalOidc,
    pub(crate) discovery: Discovery,
}

impl PortalIdp {
    /// A provider for `settings`; nothing is fetched yet.
    pub fn new(settings: PortalOidc) -> Self {
        let discovery = Discovery::new(&settings.issuer);
        Self { settings, discovery }
    }

    pub(crate) fn client(
        &self,
        metadata: &CoreProviderMetadata,
        redirect: RedirectUrl,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            self.settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect)
    }
}
