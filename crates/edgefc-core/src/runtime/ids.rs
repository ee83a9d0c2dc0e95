//! Ids for invocations and messages: request ids, invocation ids, message ids.
//!
//! They only have to be unique, not secret: no one is granted anything for
//! knowing one. So they come from a fast generator seeded once per thread,
//! not from the kernel (`getrandom` is a system call on every call's path).

/// A random (version 4) UUID, in its usual hyphenated text form.
pub(crate) fn new_id() -> String {
    let bytes = fastrand::u128(..).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

#[cfg(test)]
mod tests {
    use super::new_id;

    #[test]
    fn ids_are_version_4_uuids_and_differ() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4);
        }
    }
}
