//! flujo facade

