//! The lens's read-only role is a type: a `SqliteReader` has no method that writes or deletes,
//! so code that tries either through one does not compile (the cases in `tests/ui/`, with the
//! compiler's errors they must give beside them). The runtime checks of a read-only open are in
//! `read_open.rs`.

#[test]
fn a_reader_has_no_method_that_writes_or_deletes() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/reader_cannot_*.rs");
}
