//! Signed tokens (`Config::jwt_key`): with a key set, every WebSocket upgrade and every
//! session opened over HTTP must bring a JSON Web Token signed with it (HS256, RFC 7519), in
//! `Authorization: Bearer TOKEN`, a `token` query parameter (browsers cannot set headers on a
//! WebSocket), or the `wsecho_token` cookie. Its signature, `exp` and `nbf` are checked (with
//! `LEEWAY` for clocks that differ); its `sub` names the client to handlers and programs.
//! Anything else is refused 401 with a one-line reason. Only HS256 is accepted: `alg: none`
//! and every other algorithm are refused, whatever the token says.

use crate::net::http::Refusal;
use crate::protocol::routes::UpgradeRequest;
use crate::protocol::sha256::hmac_sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far `exp` and `nbf` may be off for clocks that differ.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The cookie a page may carry its token in.
pub const COOKIE: &str = "wsecho_token";

/// What a valid token says about its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its `sub` claim, if it has one.
    pub subject: Option<String>,
}

/// With a `key` (tokens required), check the token `request` brings against it now: the
/// token's `sub`, or the refusal. Without a key, nobody is named and everyone passes.
pub fn subject(request: &UpgradeRequest, key: Option<&[u8]>) -> Result<Option<String>, Refusal> {
    let Some(key) = key else {
        return Ok(None);
    };
    let token = find(request).ok_or_else(|| {
        refused(format!(
            "a token is required: send it as Authorization: Bearer TOKEN, a `token` query \
             parameter or the {COOKIE} cookie"
        ))
    })?;
    let verified = verify(token, key, now()).map_err(refused)?;
    Ok(verified.subject)
}

/// Seconds since 1970, as `exp` and `nbf` count them.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn refused(reason: String) -> Refusal {
    Refusal::new(401, reason).with_header("WWW-Authenticate: Bearer")
}

fn find<'a>(request: &'a UpgradeRequest) -> Option<&'a str> {
    let bearer = request.header("Authorization").and_then(|value| {
        let (scheme, token) = value.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer
        .or_else(|| request.query_param("token"))
        .or_else(|| request.cookie(COOKIE))
}

/// The token's claims if it is good; else why not, in words for the client.
pub fn verify(token: &str, key: &[u8], now: u64) -> Result<Verified, String> {
    let malformed = || "the token is not a JWT (three base64url parts joined by dots)".to_string();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    // The signature covers `header.payload` as sent.
    let signed = &token[..header.len() + 1 + payload.len()];
    let header: serde_json::Value = decode(header)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(malformed)?;
    match header.get("alg").and_then(|alg| alg.as_str()) {
        Some("HS256") => {}
        Some(other) => {
            return Err(format!(
                "the token's algorithm is {other}: only HS256 tokens are accepted"
            ));
        }
        None => return Err("the token's header names no algorithm (alg)".to_string()),
    }
    let expected = hmac_sha256(key, signed.as_bytes());
    let given = decode(signature).ok_or_else(malformed)?;
    if !same(&given, &expected) {
        return Err(
            "the token's signature does not match: it was not signed with this \
                    server's key"
                .to_string(),
        );
    }
    let claims: serde_json::Value = decode(payload)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(malformed)?;
    let leeway = LEEWAY.as_secs();
    let time = |name: &str| -> Result<Option<u64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_f64()
                .filter(|seconds| *seconds >= 0.0)
                .map(|seconds| Some(seconds as u64))
                .ok_or_else(|| format!("the token's {name} is not a time in seconds")),
        }
    };
    if let Some(expiry) = time("exp")?
        && now > expiry.saturating_add(leeway)
    {
        return Err(format!(
            "the token has expired ({} s ago): get a new one",
            now - expiry
        ));
    }
    if let Some(not_before) = time("nbf")?
        && now.saturating_add(leeway) < not_before
    {
        return Err(format!(
            "the token is not valid yet (for another {} s)",
            not_before - now
        ));
    }
    let subject = match claims.get("sub") {
        None => None,
        Some(sub) => Some(
            sub.as_str()
                .ok_or("the token's sub is not a string")?
                .to_string(),
        ),
    };
    Ok(Verified { subject })
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// base64url without padding (RFC 4648 section 5), as JWTs use; `None` for anything else.
fn decode(text: &str) -> Option<Vec<u8>> {
    let value = |byte: u8| -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut bits = 0u32;
        for &byte in chunk {
            bits = bits << 6 | value(byte)?;
        }
        let bytes = (bits << (6 * (4 - chunk.len()))).to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
