//! Netlink backend: programs a [`crate::ruleset::Ruleset`] into the kernel in one atomic batch.
//! (Being written; see issue 4.)
