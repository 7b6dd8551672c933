//! layer (to be written)
