//! Unguessable names: 128 random bits as 32 lowercase hex digits. Browser recordings' ids and
//! upload keys, and live sessions' paths, are such keys: whoever holds one may use what it
//! names, so it must not be guessable, and anything else in its place is no key of ours.

/// A new key from the OS's random source.
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` has the form of a key (32 lowercase hex digits).
pub fn is_key(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_32_lowercase_hex_digits() {
        let key = random_key();
        assert!(is_key(&key), "{key}");
        assert_ne!(random_key(), key);
        assert!(is_key("0123456789abcdef0123456789abcdef"));
        for bad in [
            "",
            "0123456789ABCDEF0123456789abcdef",
            "../../etc/passwd",
            "0123456789abcdef0123456789abcde",
        ] {
            assert!(!is_key(bad), "{bad}");
        }
    }
}
