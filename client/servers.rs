//! Address layer of the client: the sottod nodes of one deployment
//! (`--server A,B,C`, docs/CLIENT.md "Several servers"), in the order to try them.
//!
//! Invariant: a [`Servers`] holds 1 to [`MAX_SERVERS`] distinct, well-formed
//! `HOST:PORT` entries in the order given; nothing here resolves a name or
//! opens a socket. Every node is pinned by the one server key built into the
//! binary: nothing is kept per address.

use std::net::Ipv6Addr;

/// Addresses accepted at most in one `--server` list.
pub const MAX_SERVERS: usize = 16;
/// The longest host name (RFC 1035: 253 characters written out).
const MAX_HOST: usize = 253;

/// The nodes to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Servers(Vec<String>);

impl Servers {
    /// Parses a comma-separated `HOST:PORT` list: spaces around an entry are
    /// dropped; an empty entry, a duplicate (host compared without case), a
    /// malformed entry or more than [`MAX_SERVERS`] is an error saying which.
    pub fn parse(list: &str) -> Result<Servers, String> {
        let n = list.split(',').count();
        if n > MAX_SERVERS {
            return Err(format!("--server lists {n} addresses; at most {MAX_SERVERS}"));
        }
        let mut out: Vec<String> = Vec::with_capacity(n);
        for (i, entry) in list.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                return Err(format!("--server: address {} of the list is empty", i + 1));
            }
            check_address(entry).map_err(|why| format!("--server: '{entry}' is not HOST:PORT ({why})"))?;
            if out.iter().any(|seen| seen.eq_ignore_ascii_case(entry)) {
                return Err(format!("--server: '{entry}' is listed twice"));
            }
            out.push(entry.to_string());
        }
        Ok(Servers(out))
    }

    /// The addresses, in the order to try them.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Checks one `HOST:PORT`: a port from 1 to 65535; a host name of letters,
/// digits, `-`, `_` and `.`, or an IPv4 address, or an IPv6 address in brackets.
fn check_address(entry: &str) -> Result<(), &'static str> {
    let (host, port) = entry.rsplit_once(':').ok_or("no port")?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("the port is not from 1 to 65535"),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("an unclosed '['")?;
        return inner.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| "not an IPv6 address in brackets");
    }
    if host.is_empty() {
        return Err("no host");
    }
    if host.contains(':') {
        return Err("an IPv6 address goes in brackets, as [::1]:7777");
    }
    if host.len() > MAX_HOST {
        return Err("the host name is too long");
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("the host has a character a host name cannot have");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        Servers::parse(s).unwrap().iter().map(str::to_string).collect()
    }

    #[test]
    fn parses_one_address_or_several_in_order() {
        assert_eq!(list("127.0.0.1:7777"), ["127.0.0.1:7777"]);
        assert_eq!(list("b.example:1,a.example:2, [::1]:3 "), ["b.example:1", "a.example:2", "[::1]:3"]);
        assert_eq!(list("node_1.local:65535"), ["node_1.local:65535"]);
    }

    #[test]
    fn rejects_empty_entries_naming_their_place() {
        for (bad, place) in [("", "1"), ("a:1,", "2"), (",a:1", "1"), ("a:1,,b:2", "2"), ("a:1, ,b:2", "2")] {
            let e = Servers::parse(bad).unwrap_err();
            assert!(e.contains(&format!("address {place} of the list is empty")), "{bad:?}: {e}");
        }
    }

    #[test]
    fn rejects_duplicates_whatever_the_case_of_the_host() {
        let e = Servers::parse("a:1,b:2,a:1").unwrap_err();
        assert!(e.contains("'a:1' is listed twice"), "{e}");
        let e = Servers::parse("Node.Example:1,node.example:1").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        // Another port is another address.
        assert_eq!(list("a:1,a:2"), ["a:1", "a:2"]);
    }

    #[test]
    fn rejects_what_is_not_host_colon_port() {
        for (bad, why) in [
            ("localhost", "no port"),
            ("localhost:", "not a number"),
            ("localhost:http", "not a number"),
            ("localhost:+1", "not a number"),
            ("localhost:0", "1 to 65535"),
            ("localhost:65536", "1 to 65535"),
            (":7777", "no host"),
            ("::1:7777", "in brackets"),
            ("[::1:7777", "unclosed"),
            ("[nope]:7777", "IPv6"),
            ("a b:1", "character"),
            ("a/b:1", "character"),
            ("h\u{e9}:1", "character"),
        ] {
            let e = Servers::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains("is not HOST:PORT"), "{bad:?}: {e}");
        }
        let long = format!("{}:1", "a".repeat(MAX_HOST + 1));
        assert!(Servers::parse(&long).unwrap_err().contains("too long"));
        assert!(Servers::parse(&format!("{}:1", "a".repeat(MAX_HOST))).is_ok());
    }

    #[test]
    fn bounds_the_number_of_addresses() {
        let at_most: Vec<String> = (1..=MAX_SERVERS).map(|p| format!("h:{p}")).collect();
        assert_eq!(Servers::parse(&at_most.join(",")).unwrap().iter().count(), MAX_SERVERS);
        let one_more: Vec<String> = (1..=MAX_SERVERS + 1).map(|p| format!("h:{p}")).collect();
        let e = Servers::parse(&one_more.join(",")).unwrap_err();
        assert!(e.contains(&format!("lists {} addresses; at most {MAX_SERVERS}", MAX_SERVERS + 1)), "{e}");
    }
}
