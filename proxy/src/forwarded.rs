//! Who the client is when the edge sits behind other proxies: only peers in
//! `trusted_proxies` may say so through `X-Forwarded-For` and
//! `X-Forwarded-Proto`. The client is the right-most address in the chain
//! that is not itself a trusted proxy; anything a client sent from
//! elsewhere is ignored (and replaced, never passed on).

use std::net::IpAddr;

use ipnet::IpNet;
use pingora_http::RequestHeader;

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, how a dual-stack
/// listener sees IPv4 clients) as the IPv4 address it is, so IPv4
/// `source_ip` rules and address checks see one spelling.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

/// What the edge tells the upstream about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress {
    /// The client, as far as trusted hops tell.
    pub ip: IpAddr,
    /// The chain to send upstream as `X-Forwarded-For` when trusted hops
    /// sent one; `None` when it is the client's address alone (the common
    /// case, built only when the header is written: see [`Self::forwarded_for`]).
    pub chain: Option<String>,
    /// `X-Forwarded-Proto` from a trusted proxy, if it sent one.
    pub proto: Option<String>,
}

impl ClientAddress {
    /// The `X-Forwarded-For` value: the trusted chain, or the client's address.
    pub fn forwarded_for(&self) -> std::borrow::Cow<'_, str> {
        match &self.chain {
            Some(chain) => chain.as_str().into(),
            None => self.ip.to_string().into(),
        }
    }
}

impl TrustedProxies {
    /// Trusts the given networks (`10.0.0.0/8`, `192.0.2.7`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let networks = entries
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{entry}` is not an IP address or CIDR network"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's forwarding headers.
    pub fn client(&self, peer: IpAddr, req: &RequestHeader) -> ClientAddress {
        let peer = canonical_ip(peer);
        if self.networks.is_empty() || !self.trusts(peer) {
            return ClientAddress { ip: peer, chain: None, proto: None };
        }
        let mut chain: Vec<&str> = Vec::new();
        for value in req.headers.get_all("x-forwarded-for") {
            let Ok(text) = value.to_str() else { continue };
            chain.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()));
        }
        let mut client = peer;
        let mut kept = chain.len();
        for (index, hop) in chain.iter().enumerate().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = canonical_ip(ip);
            kept = index;
            if !self.trusts(ip) {
                break;
            }
        }
        let mut forwarded_for: Vec<&str> = chain[kept..].to_vec();
        let peer_text = peer.to_string();
        forwarded_for.push(&peer_text);
        let proto = req
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| p == "http" || p == "https");
        ClientAddress { ip: client, chain: Some(forwarded_for.join(", ")), proto }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(xff: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for value in xff {
            req.append_header("x-forwarded-for", *value).unwrap();
        }
        req.insert_header("x-forwarded-proto", "https").unwrap();
        req
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_claim_another_address() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let client = proxies.client(ip("203.0.113.9"), &request(&["1.2.3.4"]));
        assert_eq!(client, ClientAddress { ip: ip("203.0.113.9"), chain: None, proto: None });
        assert_eq!(client.forwarded_for(), "203.0.113.9");
        let nobody_trusted = TrustedProxies::default().client(ip("10.0.0.1"), &request(&["1.2.3.4"]));
        assert_eq!(nobody_trusted.ip, ip("10.0.0.1"));
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "192.0.2.7".into()]).unwrap();
        let client = proxies.client(ip("10.0.0.2"), &request(&["6.6.6.6, 198.51.100.4", "192.0.2.7"]));
        assert_eq!(client.ip, ip("198.51.100.4"), "6.6.6.6 was written by the client itself");
        assert_eq!(client.forwarded_for(), "198.51.100.4, 192.0.2.7, 10.0.0.2");
        assert_eq!(client.proto.as_deref(), Some("https"));
        let garbage = proxies.client(ip("10.0.0.2"), &request(&["not-an-ip"]));
        assert_eq!(garbage.ip, ip("10.0.0.2"), "an unreadable hop stops the walk at the last trusted one");
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_are_plain_ipv4() {
        let direct = TrustedProxies::default().client(ip("::ffff:198.51.100.4"), &request(&[]));
        assert_eq!((direct.ip, direct.forwarded_for().as_ref()), (ip("198.51.100.4"), "198.51.100.4"));
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let hop = proxies.client(ip("::ffff:10.0.0.2"), &request(&["::ffff:203.0.113.7"]));
        assert_eq!(hop.ip, ip("203.0.113.7"));
        assert_eq!(canonical_ip(ip("2001:db8::1")), ip("2001:db8::1"));
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
