use super::*;

const KEY: &[u8] = b"a key of thirty-two bytes, or so";
const NOW: u64 = 1_800_000_000;

fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut bits = 0u32;
        for (i, byte) in chunk.iter().enumerate() {
            bits |= u32::from(*byte) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with `header` and `claims`, signed with `key`.
fn token(header: &str, claims: &str, key: &[u8]) -> String {
    let signed = format!(
        "{}.{}",
        encode(header.as_bytes()),
        encode(claims.as_bytes())
    );
    let signature = hmac_sha256(key, signed.as_bytes());
    format!("{signed}.{}", encode(&signature))
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

#[test]
fn base64url_round_trips_at_every_length_and_refuses_other_alphabets() {
    for len in 0..40u8 {
        let bytes: Vec<u8> = (0..len).map(|n| n.wrapping_mul(37)).collect();
        assert_eq!(decode(&encode(&bytes)), Some(bytes));
    }
    assert_eq!(decode("a+b/"), None);
    assert_eq!(decode("abc="), None);
    assert_eq!(decode("abcde"), None);
}

#[test]
fn a_good_token_gives_its_subject() {
    let good = token(HS256, r#"{"sub":"alice","exp":1800000060}"#, KEY);
    let verified = verify(&good, KEY, NOW).unwrap();
    assert_eq!(verified.subject.as_deref(), Some("alice"));
    let anonymous = token(HS256, r#"{"exp":1800000060}"#, KEY);
    assert_eq!(verify(&anonymous, KEY, NOW).unwrap().subject, None);
}

#[test]
fn each_bad_token_is_refused_with_its_reason() {
    let cases = [
        (
            token(HS256, r#"{"sub":"a"}"#, b"another key"),
            "signature does not match",
        ),
        (token(HS256, r#"{"exp":1799999000}"#, KEY), "expired"),
        (token(HS256, r#"{"nbf":1800001000}"#, KEY), "not valid yet"),
        (
            token(r#"{"alg":"none"}"#, r#"{"sub":"a"}"#, KEY),
            "only HS256",
        ),
        (
            token(r#"{"alg":"RS256"}"#, r#"{"sub":"a"}"#, KEY),
            "only HS256",
        ),
        (
            token(r#"{"typ":"JWT"}"#, r#"{"sub":"a"}"#, KEY),
            "no algorithm",
        ),
        (token(HS256, r#"{"sub":7}"#, KEY), "sub is not a string"),
        (token(HS256, r#"{"exp":"soon"}"#, KEY), "exp is not a time"),
        ("not.a-token".to_string(), "not a JWT"),
        ("a.b.c.d".to_string(), "not a JWT"),
    ];
    for (token, says) in cases {
        let error = verify(&token, KEY, NOW).unwrap_err();
        assert!(error.contains(says), "{token}: {error}");
    }
    // `alg: none` with no signature at all.
    let unsigned = format!(
        "{}.{}.",
        encode(br#"{"alg":"none"}"#),
        encode(br#"{"sub":"a"}"#)
    );
    assert!(
        verify(&unsigned, KEY, NOW)
            .unwrap_err()
            .contains("only HS256")
    );
}

#[test]
fn clocks_may_differ_by_the_leeway_and_no_more() {
    let leeway = LEEWAY.as_secs();
    let expiring = token(HS256, &format!(r#"{{"exp":{NOW}}}"#), KEY);
    assert!(verify(&expiring, KEY, NOW + leeway).is_ok());
    assert!(verify(&expiring, KEY, NOW + leeway + 1).is_err());
    let starting = token(HS256, &format!(r#"{{"nbf":{NOW}}}"#), KEY);
    assert!(verify(&starting, KEY, NOW - leeway).is_ok());
    assert!(verify(&starting, KEY, NOW - leeway - 1).is_err());
}
