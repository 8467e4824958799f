//! The kernel lab (in progress).
