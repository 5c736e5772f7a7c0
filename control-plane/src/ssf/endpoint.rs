//! Where a push stream may send its SETs. The endpoint is chosen by a
//! receiver (an API token with only the `ssf` scope), not by an admin, so
//! the control plane must not become its way into the network it runs in:
//!
//! - never to an unspecified (`0.0.0.0`, `::`, `0.0.0.0/8`), link-local
//!   (`169.254.0.0/16` — the cloud metadata services — and `fe80::/10`),
//!   multicast or broadcast address;
//! - to loopback (`127.0.0.0/8`, `::1`) and private ranges (RFC 1918,
//!   `100.64.0.0/10`, `fc00::/7`) only with `ssf_push_private_networks = true`.
//!
//! IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry. A
//! literal address is checked when the stream is written and again before
//! each delivery; a host name is checked when it is resolved, for each
//! connection (so a name that later resolves elsewhere is still caught).
//! The client follows no redirects and uses no proxy (a proxy would
//! resolve the name itself, past this check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What a connection error says when every address of a name was refused.
pub const REFUSED_NAME: &str = "resolves to no address SETs may be pushed to";

/// Why `ip` may not be pushed to, if it may not.
pub fn refused(ip: IpAddr, private_networks: bool) -> Option<String> {
    let (never, private) = match ip.to_canonical() {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    };
    if never {
        Some(format!("{ip} is an unspecified, link-local, multicast or broadcast address; SETs are never pushed there"))
    } else if private && !private_networks {
        Some(format!(
            "{ip} is a loopback or private address; push endpoints there need ssf_push_private_networks = true"
        ))
    } else {
        None
    }
}

/// (never allowed, private).
fn v4_kind(ip: Ipv4Addr) -> (bool, bool) {
    let [a, b, ..] = ip.octets();
    let never = a == 0 || ip.is_link_local() || ip.is_multicast() || ip.is_broadcast();
    let shared = a == 100 && (64..128).contains(&b);
    (never, ip.is_loopback() || ip.is_private() || shared)
}

fn v6_kind(ip: Ipv6Addr) -> (bool, bool) {
    let first = ip.segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    let site_local = first & 0xffc0 == 0xfec0;
    let never = ip.is_unspecified() || ip.is_multicast() || link_local || site_local;
    let unique_local = first & 0xfe00 == 0xfc00;
    (never, ip.is_loopback() || unique_local)
}

/// Checks the host of `url` when it is a literal address (names are checked
/// when resolved, see [`client`]).
pub fn check_url(url: &str, private_networks: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) => return Ok(()),
        None => return Err(format!("`{url}` names no host")),
    };
    match refused(ip, private_networks) {
        Some(why) => Err(format!("`delivery.endpoint_url`: {why}")),
        None => Ok(()),
    }
}

/// Resolves names with the system resolver and keeps only the addresses
/// [`refused`] allows.
struct GuardedResolver {
    private_networks: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let private_networks = self.private_networks;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match refused(addr.ip(), private_networks) {
                    Some(reason) => {
                        why.get_or_insert(reason);
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                let why = why.unwrap_or_else(|| "no address".into());
                return Err(format!("{host} {REFUSED_NAME}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The push client: no redirects, no proxy, names resolved through the check.
pub fn client(private_networks: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { private_networks }))
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("portcullis-control-plane/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_link_local_and_unspecified_addresses_are_never_allowed() {
        for never in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "fe80::1",
            "ff02::1",
            "fec0::1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
        ] {
            assert!(refused(ip(never), true).is_some(), "{never}");
            assert!(refused(ip(never), false).is_some(), "{never}");
        }
    }

    #[test]
    fn loopback_and_private_addresses_need_the_setting() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(refused(ip(private), false).unwrap().contains("ssf_push_private_networks"), "{private}");
            assert_eq!(refused(ip(private), true), None, "{private}");
        }
        for public in ["93.184.216.34", "100.128.0.1", "172.32.0.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert_eq!(refused(ip(public), false), None, "{public}");
        }
    }

    #[test]
    fn literal_hosts_in_every_spelling_are_checked() {
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "https://[::ffff:a9fe:a9fe]/",
            "http://0x7f.1:8080/",
            "http://2130706433/",
            "https://[fe80::1]/",
            "http://0/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
        }
        assert!(check_url("https://rx.example/events", false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_not_connected_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let error = client(false).post(format!("http://localhost:{port}/events")).send().await.unwrap_err();
        let chain = format!("{error:?}");
        assert!(chain.contains("ssf_push_private_networks"), "{chain}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "nothing connected to the loopback listener");
        // With the setting, the same name is reached.
        let sent =
            tokio::spawn(async move { client(true).post(format!("http://localhost:{port}/events")).send().await });
        let (stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        drop(stream);
        let _ = sent.await;
    }
}
