//! The Flash socket policy: recognising a policy request and building the reply.
//!
//! Flash Player (and so web-socket-js's bridge) asks for a policy before it opens a socket:
//! it sends `<policy-file-request/>` (Flash 7: `<cross-domain-request/>`) and one NUL byte, and
//! expects an XML document plus one NUL byte, after which the server closes. The same reply is
//! given on the dedicated policy port (843 by default) and inline on the WebSocket port.

/// The requests Flash sends, without their terminating NUL.
const REQUESTS: [&[u8]; 2] = [b"<policy-file-request/>", b"<cross-domain-request/>"];

/// The longest request, with its NUL: a policy request that grows past this is not one.
pub const MAX_REQUEST_LEN: usize = 24;

/// Whether `opening` (everything read so far, up to and including a NUL) is a policy request.
pub fn is_request(opening: &[u8]) -> bool {
    match opening.split_last() {
        Some((0, body)) => REQUESTS.contains(&body),
        _ => false,
    }
}

/// The policy document, NUL-terminated, granting `domain` access to `ws_port` (any port when
/// `None`).
pub fn reply(domain: &str, ws_port: Option<u16>) -> Vec<u8> {
    let domain = escape_attribute(domain);
    // Without a TCP port of its own (a Unix socket behind a proxy), whichever port the proxy
    // serves it on.
    let ws_port = ws_port.map_or_else(|| "*".to_string(), |port| port.to_string());
    let mut document = format!(
        "<?xml version=\"1.0\"?>\
         <cross-domain-policy>\
         <site-control permitted-cross-domain-policies=\"master-only\"/>\
         <allow-access-from domain=\"{domain}\" to-ports=\"{ws_port}\"/>\
         </cross-domain-policy>"
    )
    .into_bytes();
    document.push(0);
    document
}

/// Keep a user-given domain from breaking out of its XML attribute.
fn escape_attribute(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_request_forms_only_with_their_nul() {
        assert!(is_request(b"<policy-file-request/>\0"));
        assert!(is_request(b"<cross-domain-request/>\0"));
        assert!(!is_request(b"<policy-file-request/>"));
        assert!(!is_request(b"<policy-file-request/ >\0"));
        assert!(!is_request(b"GET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn reply_is_nul_terminated_and_escapes_the_domain() {
        let reply = reply("a\"b<c>&", Some(9000));
        assert_eq!(reply.last(), Some(&0));
        let text = std::str::from_utf8(&reply[..reply.len() - 1]).unwrap();
        assert!(text.contains("domain=\"a&quot;b&lt;c&gt;&amp;\" to-ports=\"9000\""));
        assert!(!text.contains('\0'));
        let behind_a_proxy = super::reply("*", None);
        assert!(String::from_utf8_lossy(&behind_a_proxy).contains("to-ports=\"*\""));
    }
}
