//! ember
