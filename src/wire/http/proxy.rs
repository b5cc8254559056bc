//! Which requests go through a proxy: never a loopback endpoint, never a `no_proxy` host.

/// Whether `host` (as in a URL, IPv6 in brackets or not) is a loopback host: `localhost`, a
/// name under `.localhost` (RFC 6761), or a loopback address (IPv4-mapped included).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The hosts `no_proxy` exempts from proxying.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NoProxy {
    all: bool,
    names: Vec<String>,
    blocks: Vec<(std::net::IpAddr, u8)>,
}

impl NoProxy {
    /// `list` in curl's `NO_PROXY` syntax.
    pub(super) fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in list
            .split([',', ' ', '\t'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                out.all = true;
                continue;
            }
            if let Some((ip, bits)) = entry.split_once('/') {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                if let (Ok(ip), Ok(bits)) = (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
                    out.blocks.push((ip.to_canonical(), bits));
                }
                continue;
            }
            let host = if let Some(v6) = entry.strip_prefix('[') {
                v6.split(']').next().unwrap_or("")
            } else if entry.matches(':').count() == 1 {
                entry.split(':').next().unwrap_or("")
            } else {
                entry
            };
            let host = host.trim_start_matches("*.").trim_start_matches('.');
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                out.blocks.push((ip.to_canonical(), bits));
            } else if !host.is_empty() {
                out.names
                    .push(host.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        out
    }

    pub(super) fn matches(&self, host: &str) -> bool {
        if self.all {
            return true;
        }
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            let ip = ip.to_canonical();
            return self
                .blocks
                .iter()
                .any(|(net, bits)| in_block(ip, *net, *bits));
        }
        self.names.iter().any(|name| {
            host == *name
                || host
                    .strip_suffix(name.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }
}

fn in_block(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "a.localhost",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["localhost.evil.com", "10.0.0.1", "example.com", "[::2]", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn no_proxy_follows_curl() {
        let np = NoProxy::parse(
            " example.com, .corp.test ,*.wild.test, host.test:8443, 10.0.0.0/8, 192.168.1.7, [fd00::1], fe80::/10",
        );
        for host in [
            "example.com",
            "api.example.com",
            "EXAMPLE.COM.",
            "corp.test",
            "a.corp.test",
            "x.wild.test",
            "host.test",
            "10.1.2.3",
            "192.168.1.7",
            "[fd00::1]",
            "fe80::1",
        ] {
            assert!(np.matches(host), "{host}");
        }
        for host in [
            "badexample.com",
            "example.com.evil",
            "11.0.0.1",
            "192.168.1.8",
            "fd00::2",
        ] {
            assert!(!np.matches(host), "{host}");
        }
        assert!(NoProxy::parse("*").matches("anything.example"));
        assert!(!NoProxy::parse("").matches("example.com"));
    }
}
