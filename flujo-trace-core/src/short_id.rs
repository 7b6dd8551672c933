//! Short ids: a run shown by the end of its id. Run ids are UUID v7, whose start is the time
//! (every run of a minute shares the first 8 characters, of a millisecond the first 12) and whose
//! end is random, so the last characters tell runs apart: a short id is the shortest end of the
//! id, of [`SHORT_ID_MIN`] to [`SHORT_ID_MAX`] characters, that no other run's id ends with.
//! Stores index the last [`TAIL_LEN`] characters of `run_id` (schema version 6), so finding the
//! runs a short id could mean is an index lookup.

/// The characters of an id's end a store indexes, and the shortest short id.
pub const TAIL_LEN: usize = 8;
/// The shortest short id.
pub const SHORT_ID_MIN: usize = TAIL_LEN;
/// The longest short id (the last group of a UUID): a run whose last 12 characters are shared
/// is shown by its full id.
pub const SHORT_ID_MAX: usize = 12;

/// The last [`TAIL_LEN`] characters of an id (the whole id when it is shorter), the key stores
/// index.
pub fn id_tail(run_id: &str) -> &str {
    let start = run_id
        .char_indices()
        .rev()
        .nth(TAIL_LEN - 1)
        .map_or(0, |(at, _)| at);
    &run_id[start..]
}

/// The short id of `run_id` among `others` (the ids sharing its tail, as
/// [`RunReader::run_ids_by_tail`](crate::RunReader::run_ids_by_tail) finds them; `run_id`
/// itself may be among them): its shortest end of at least [`SHORT_ID_MIN`] characters that no
/// other id ends with, or the whole id when even [`SHORT_ID_MAX`] characters are shared.
pub fn short_id<'a>(run_id: &'a str, others: &[String]) -> &'a str {
    let chars: Vec<(usize, char)> = run_id.char_indices().collect();
    if chars.len() <= SHORT_ID_MIN {
        return run_id;
    }
    for len in SHORT_ID_MIN..=SHORT_ID_MAX.min(chars.len()) {
        let end = &run_id[chars[chars.len() - len].0..];
        if !end.contains('-')
            && !others
                .iter()
                .any(|other| other != run_id && other.ends_with(end))
        {
            return end;
        }
    }
    run_id
}

/// Whether `text` can be a short id: [`SHORT_ID_MIN`] to [`SHORT_ID_MAX`] hexadecimal digits
/// (either case).
pub fn could_be_short_id(text: &str) -> bool {
    (SHORT_ID_MIN..=SHORT_ID_MAX).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn the_tail_is_the_last_eight_characters() {
        assert_eq!(id_tail(A), "2e3f4a5b");
        assert_eq!(id_tail("abc"), "abc");
        assert_eq!(id_tail("ééééééééé"), "éééééééé");
    }

    #[test]
    fn a_short_id_grows_until_no_other_id_ends_with_it() {
        assert_eq!(short_id(A, &[]), "2e3f4a5b");
        assert_eq!(short_id(A, &[A.to_string()]), "2e3f4a5b");
        let shares_8 = "0193a1b2-0000-7e5f-8a9b-0c1e2e3f4a5b".to_string();
        assert_eq!(short_id(A, &[A.to_string(), shares_8]), "d2e3f4a5b");
        let shares_11 = "0193a1b2-0000-7e5f-8a9b-9c1d2e3f4a5b".to_string();
        assert_eq!(short_id(A, &[shares_11]), "0c1d2e3f4a5b");
        let shares_12 = "ffffffff-0000-7e5f-8a9b-0c1d2e3f4a5b".to_string();
        assert_eq!(short_id(A, &[shares_12]), A);
        assert_eq!(short_id("abc", &[]), "abc");
    }

    #[test]
    fn short_ids_are_8_to_12_hex_digits() {
        assert!(could_be_short_id("2e3f4a5b"));
        assert!(could_be_short_id("0C1D2E3F4A5B"));
        assert!(!could_be_short_id("2e3f4a5"));
        assert!(!could_be_short_id("0c1d2e3f4a5b0"));
        assert!(!could_be_short_id("2e3f-a5b"));
        assert!(!could_be_short_id("latest00"));
    }
}
