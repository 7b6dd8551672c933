//! writer (to be written)
